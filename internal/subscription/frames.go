package subscription

import "github.com/jsonrtc/jsonrtc/protocol"

// Frames builds the server's frames of one subscription (docs/protocol.md
// §6, §7).
type Frames struct {
	Package    protocol.Package
	Subsession string
	// Target is the notifier as the subscriber named it.
	Target string
	// Subscriber is the subscriber's identity.
	Subscriber string
}

// Accepted is the 200 answer to the start correlated by corr; an empty
// initiator stands for the subscriber. expiry is in seconds. ext, here
// and in Rejected and Notify, are the frame's extension headers (what
// the to_web rules made of the upstream's SIP message).
func (s Frames) Accepted(corr, initiator string, expiry int, ext ...protocol.Ext) *protocol.Frame {
	if initiator == "" {
		initiator = s.Subscriber
	}
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: s.Package,
			SubsessionID: s.Subsession, CorrelationID: corr, MessageState: protocol.StateFinal},
		Header: protocol.Header{Action: protocol.ActionStart, Initiator: initiator, Target: s.Target,
			ResponseCode: protocol.CodeOK, Reason: "OK", Expiry: expiry, Ext: ext},
	}
}

// StartError fails the start correlated by corr, which waited for an
// answer; an empty initiator stands for the subscriber.
func (s Frames) StartError(corr, initiator string, code int, reason string, ext ...protocol.Ext) *protocol.Frame {
	if initiator == "" {
		initiator = s.Subscriber
	}
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeError, Package: s.Package,
			SubsessionID: s.Subsession, CorrelationID: corr},
		Header: protocol.Header{Action: protocol.ActionStart, Initiator: initiator, Target: s.Target,
			ErrorCode: code, Reason: reason, Ext: ext},
	}
}

// Rejected fails the start correlated by corr with what the upstream
// answered: its SIP final response code, as the client error code it
// maps to, and its reason, unless that is empty or too long.
func (s Frames) Rejected(corr, initiator string, sipCode int, reason string, ext ...protocol.Ext) *protocol.Frame {
	code := protocol.ClientErrorCode(sipCode)
	if reason == "" || len(reason) > 256 {
		reason = protocol.Reason(code)
	}
	return s.StartError(corr, initiator, code, reason, ext...)
}

// Notify carries payload. The notifier is the sender (wsc.js shows
// initiator as the sender, target as the receiver).
func (s Frames) Notify(payload []byte, ext ...protocol.Ext) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: s.Package, SubsessionID: s.Subsession},
		Header:  protocol.Header{Action: protocol.ActionNotify, Initiator: s.Target, Target: s.Subscriber, Ext: ext},
		Payload: payload,
	}
}

// Shutdown tells the subscriber the subscription ended.
func (s Frames) Shutdown(reason string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: s.Package, SubsessionID: s.Subsession},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: s.Target, Target: s.Subscriber, Reason: reason},
	}
}

// Reply answers the client frame f of package pkg: an error, or a final
// response when typ is protocol.TypeResponse. An empty reason is the
// code's own.
func Reply(pkg protocol.Package, f *protocol.Frame, typ protocol.Type, code int, reason string) *protocol.Frame {
	if reason == "" {
		reason = protocol.Reason(code)
	}
	out := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: pkg,
			SubsessionID: f.Control.SubsessionID, CorrelationID: protocol.ClientCorrelation(f)},
		Header: protocol.Header{Action: f.Header.Action, Initiator: f.Header.Initiator, Target: f.Header.Target, Reason: reason},
	}
	if typ == protocol.TypeError {
		out.Header.ErrorCode = code
	} else {
		out.Header.ResponseCode = code
		out.Control.MessageState = protocol.StateFinal
	}
	return out
}
