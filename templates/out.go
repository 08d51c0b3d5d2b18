package templates

import (
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// SendOut sends the checked frame f of a messaging action outside any
// dialog, from identity to f's target over ua as d routes it (d is the
// routing section's decision for a message to that target), and returns
// the frame that answers f. It blocks until the final response (Timer F
// a hop at most).
func (a *Action) SendOut(ua *sipgw.UserAgent, identity string, f *protocol.Frame, d routing.Decision) *protocol.Frame {
	switch {
	case d.Action == routing.ActionReject:
		return answerTo(f, d.Code, d.Reason)
	case d.Action == routing.ActionWeb:
		return answerTo(f, protocol.CodeNotFound, "action "+string(a.Name)+" goes to SIP; the target is a web identity")
	case f.Header.Target == "":
		return answerTo(f, protocol.CodeBadRequest, "header.target is missing")
	}
	target := f.Header.Target
	if d.Target != "" {
		target = d.Target
	}
	ans, err := ua.Request(identity, target, sipgw.Route{Trunk: d.Trunk, Sender: d.Sender, Headers: d.Headers}, a.SIPRequest(f))
	return a.SIPAnswer(f, ans, err)
}

// Done returns the function that answers f with send once its SIP
// request in a dialog got its final response (call.Handler.Request).
func (a *Action) Done(f *protocol.Frame, send func(*protocol.Frame)) func(sipgw.Answer, error) {
	return func(ans sipgw.Answer, err error) { send(a.SIPAnswer(f, ans, err)) }
}
