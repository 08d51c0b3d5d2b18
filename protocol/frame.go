package protocol

import (
	"encoding/json"
	"strconv"
)

// Version is the only protocol version there is.
const Version = "1.0"

// Subprotocols negotiated in the WebSocket handshake.
const (
	// SubprotocolJSONrtc is this project's own; clients that offer it get
	// the extensions of docs/protocol.md §11.
	SubprotocolJSONrtc = "jsonrtc"
	// SubprotocolOracle is the one wsc.js 1.0 offers.
	SubprotocolOracle = "webrtc.oracle.com"
)

// Type is control.type.
type Type string

const (
	TypeRequest         Type = "request"
	TypeResponse        Type = "response"
	TypeMessage         Type = "message"
	TypeAcknowledgement Type = "acknowledgement"
	TypeError           Type = "error"
)

func (t Type) valid() bool {
	switch t {
	case TypeRequest, TypeResponse, TypeMessage, TypeAcknowledgement, TypeError:
		return true
	}
	return false
}

// Package is control.package_type.
type Package string

const (
	PackageRegister            Package = "register"
	PackageCall                Package = "call"
	PackagePresence            Package = "presence"
	PackageMessageNotification Package = "message_notification"
	PackageMessaging           Package = "messaging"
)

// Action is header.action.
type Action string

const (
	ActionConnect Action = "connect"
	// ActionAuthenticate: the gateway asks a live session to answer a
	// registrar challenge (docs/protocol.md §4.8).
	ActionAuthenticate Action = "authenticate"
	// ActionStandby: a client about to close its socket for standby
	// registers how to wake it (docs/protocol.md §4.9).
	ActionStandby  Action = "standby"
	ActionStart    Action = "start"
	ActionComplete Action = "complete"
	ActionPrack    Action = "prack"
	ActionShutdown Action = "shutdown"
	ActionTrickle  Action = "trickle"
	ActionDTMF     Action = "dtmf"
	ActionTransfer Action = "transfer"
	ActionNotify   Action = "notify"
	ActionPublish  Action = "publish"
	ActionSend     Action = "send"
)

// ActionICEServers: a client asks for fresh ICE servers (a TURN
// credential about to expire, docs/protocol.md §4.10).
const ActionICEServers Action = "ice_servers"

// MessageState is control.message_state.
type MessageState string

const (
	StateInitial    MessageState = "initial"
	StateSubsequent MessageState = "subsequent"
	StateFinal      MessageState = "final"
)

// Frame is one JSONrtc frame.
type Frame struct {
	Control Control
	Header  Header
	// Payload is the package's content as a raw JSON object, or nil.
	// Gateways relay it without decoding; handlers that need its fields
	// decode it with the helpers in payload.go.
	Payload json.RawMessage
}

// MaxSequence is the highest sequence a frame can carry: 2^53-1, the
// largest integer a JavaScript peer represents exactly. A session whose
// sequences reach it cannot go on (session.ErrSequenceExhausted).
const MaxSequence = 1<<53 - 1

// Control holds the control headers. A zero value means "absent": no
// valid frame carries a sequence or ack_sequence of 0.
type Control struct {
	Type          Type
	Package       Package
	SessionID     string
	SubsessionID  string
	Sequence      uint64
	AckSequence   uint64
	MessageState  MessageState
	CorrelationID string
	Version       string
}

// Header holds the general headers.
type Header struct {
	Action       Action
	Initiator    string
	Target       string
	ResponseCode int
	ErrorCode    int
	Reason       string
	// Reconnect headers (docs/protocol.md §4.4).
	CSLR, CSLW, CSUW, SSLR OptSeq
	Expiry                 int
	ReferTo                string
	// Replaces names the call an attended transfer's new call replaces
	// (docs/protocol.md §5.12): the transferor's consult subsession on a
	// transfer request, an opaque token on the transferee's transfer and
	// start, the replaced subsession on the start a transfer target gets.
	Replaces string
	// Authenticate and Authorization are JSON objects whose shape the
	// application (or the SIP digest mapping) defines.
	Authenticate  json.RawMessage
	Authorization json.RawMessage
	// Ext lists the extension headers in the order they arrived.
	Ext []Ext
}

// OptSeq is a sequence number that may be absent, null or a number; the
// reconnect headers use all three.
type OptSeq struct {
	Present bool // the key was in the frame
	Null    bool // its value was null
	V       uint64
}

// Seq returns an OptSeq holding n.
func Seq(n uint64) OptSeq { return OptSeq{Present: true, V: n} }

// IsNumber reports whether the header carried a number.
func (o OptSeq) IsNumber() bool { return o.Present && !o.Null }

// ExtKind is the JSON type of an extension header's value.
type ExtKind uint8

const (
	ExtString ExtKind = iota
	ExtNumber
	ExtBool
)

// Ext is one extension header. Value is the string itself for ExtString,
// the number's JSON literal for ExtNumber and "true" or "false" for ExtBool.
type Ext struct {
	Name  string
	Kind  ExtKind
	Value string
}

// ExtValue returns the value of the extension header name and whether it
// is present. Names compare case-sensitively, as JSON keys do.
func (h *Header) ExtValue(name string) (Ext, bool) {
	for _, e := range h.Ext {
		if e.Name == name {
			return e, true
		}
	}
	return Ext{}, false
}

// EffectivePackage returns control.package_type with the defaults of
// docs/protocol.md §2.2 applied: absent means call, except for connect.
func (f *Frame) EffectivePackage() Package {
	if f.Control.Package != "" {
		return f.Control.Package
	}
	if f.Header.Action == ActionConnect {
		return PackageRegister
	}
	return PackageCall
}

// ClientCorrelation is the id that names a client frame. A request's
// answer echoes the correlation_id the client gave (docs/protocol.md
// §2.5); otherwise a client frame is "c<sequence>".
func ClientCorrelation(f *Frame) string {
	if f.Control.CorrelationID != "" && (f.Control.Type == TypeRequest || f.Control.Sequence == 0) {
		return f.Control.CorrelationID
	}
	if f.Control.Sequence != 0 {
		return "c" + strconv.FormatUint(f.Control.Sequence, 10)
	}
	return ""
}
