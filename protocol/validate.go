package protocol

// typeSet is a bit set of Types.
type typeSet uint8

const (
	tReq typeSet = 1 << iota
	tResp
	tMsg
	tErr
)

func bit(t Type) typeSet {
	switch t {
	case TypeRequest:
		return tReq
	case TypeResponse:
		return tResp
	case TypeMessage:
		return tMsg
	case TypeError:
		return tErr
	}
	return 0
}

// actions lists, per package, the actions it knows and the frame types
// each may travel in.
var actions = map[Package]map[Action]typeSet{
	PackageRegister: {ActionConnect: tReq | tResp | tErr, ActionAuthenticate: tReq | tResp | tErr, ActionStandby: tReq | tResp | tErr, ActionICEServers: tReq | tResp | tErr},
	PackageCall: {
		ActionStart:    tReq | tResp | tMsg | tErr,
		ActionComplete: tMsg,
		ActionPrack:    tReq | tResp | tErr,
		ActionShutdown: tMsg,
		ActionTrickle:  tMsg,
		ActionDTMF:     tMsg,
		ActionTransfer: tReq | tResp | tMsg | tErr,
	},
	PackagePresence: {
		ActionStart:    tReq | tResp | tErr,
		ActionNotify:   tMsg,
		ActionPublish:  tReq | tResp | tErr,
		ActionShutdown: tMsg,
	},
	PackageMessageNotification: {
		ActionStart:    tReq | tResp | tErr,
		ActionNotify:   tMsg,
		ActionShutdown: tMsg,
	},
	PackageMessaging: {ActionSend: tReq | tResp | tErr},
}

// KnownPackage reports whether p is a package this protocol defines.
func KnownPackage(p Package) bool { _, ok := actions[p]; return ok }

// KnownAction reports whether a is an action this protocol defines in p.
func KnownAction(p Package, a Action) bool { _, ok := actions[p][a]; return ok }

// Validate checks what can be checked of a frame without any session
// state: a known type, package and action, the action allowed in that
// package and type, the fields each type needs. It returns an *Error
// whose code is the one docs/protocol.md §2.7 names.
func Validate(f *Frame) error { return ValidateDeclared(f, nil) }

// ValidateDeclared is Validate that also takes the actions declared
// reports (the configuration's templates, docs/protocol.md §2.8) as
// actions of their package, in requests, responses and errors.
func ValidateDeclared(f *Frame, declared func(Package, Action) bool) error {
	c := &f.Control
	if c.Type == "" {
		return newError(CodeBadRequest, "control.type is missing")
	}
	if !c.Type.valid() {
		return newError(CodeBadRequest, "unknown control.type "+quoteTrunc([]byte(c.Type)))
	}
	if c.Version != "" && c.Version != Version {
		return newError(CodeBadRequest, "unsupported version "+quoteTrunc([]byte(c.Version)))
	}
	switch c.MessageState {
	case "", StateInitial, StateSubsequent, StateFinal:
	default:
		return newError(CodeBadRequest, "unknown control.message_state")
	}
	pkg := f.EffectivePackage()
	acts, ok := actions[pkg]
	if !ok {
		return newError(CodeBadRequest, "unknown package_type "+quoteTrunc([]byte(pkg)))
	}
	if c.Type == TypeAcknowledgement {
		// Acknowledgements carry no action (wsc.js sends an empty header).
		return nil
	}
	h := &f.Header
	if h.Action == "" {
		return newError(CodeBadRequest, "header.action is missing")
	}
	allowed, ok := acts[h.Action]
	if !ok && declared != nil && declared(pkg, h.Action) {
		allowed, ok = tReq|tResp|tErr, true
	}
	if !ok {
		return newError(CodeMethodNotAllowed, "action "+quoteTrunc([]byte(h.Action))+" is not allowed in package "+string(pkg))
	}
	if allowed&bit(c.Type) == 0 {
		return newError(CodeMethodNotAllowed, "action "+string(h.Action)+" cannot be a "+string(c.Type))
	}
	if c.Type == TypeError && h.ErrorCode == 0 {
		return newError(CodeBadRequest, "header.error_code is missing")
	}
	if len(c.SessionID) > 128 || len(c.SubsessionID) > 128 || len(c.CorrelationID) > 128 {
		return newError(CodeBadRequest, "an id is too long")
	}
	if len(h.Initiator) > 256 || len(h.Target) > 256 || len(h.ReferTo) > 256 || len(h.Replaces) > 256 || len(h.Reason) > 256 {
		return newError(CodeBadRequest, "an address or reason is too long")
	}
	if h.Replaces != "" && (pkg != PackageCall || h.Action != ActionTransfer && h.Action != ActionStart || c.Type != TypeRequest) {
		return newError(CodeBadRequest, "header.replaces belongs on a call's transfer or start request")
	}
	if pkg != PackageRegister && c.Type != TypeAcknowledgement && c.SubsessionID == "" && pkg != PackageMessaging {
		return newError(CodeBadRequest, "control.subsession_id is missing")
	}
	return nil
}

// IsReconnect reports whether f is a reconnect connect: a connect request
// that names an existing session and carries no sequence of its own.
func (f *Frame) IsReconnect() bool {
	return f.Control.Type == TypeRequest && f.Header.Action == ActionConnect && f.Control.SessionID != "" && f.Control.Sequence == 0
}
