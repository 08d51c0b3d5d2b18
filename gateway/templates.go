package gateway

import (
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Declared actions (the templates section, docs/protocol.md §2.8): a
// client request of one is checked against its template and sent on as
// its SIP request (in the call's dialog for package call, routed as a
// message otherwise) or to its webhook; the answer comes back as the
// request's response or error. The peer's INFOs of a declared package
// come the other way through the call handler (call/template.go).

// declared handles f, a request, when its action is a declared one, and
// reports whether it was.
func (s *Session) declared(f *protocol.Frame) bool {
	a := s.g.tmpl.Load().Lookup(f.EffectivePackage(), f.Header.Action)
	if a == nil {
		return false
	}
	if err := a.Check(f); err != nil {
		s.Send(errorFor(f, protocol.CodeOf(err), protocol.ReasonOf(err)), false)
		return true
	}
	// Each costs the gateway a SIP transaction or an HTTP request: it
	// counts as a message against the session's quota.
	if !s.quota.AllowMessage() {
		s.Send(errorFor(f, protocol.CodeServiceUnavailable, "message rate limited"), false)
		return true
	}
	send := func(out *protocol.Frame) { s.Send(out, false) }
	if a.Package == protocol.PackageCall && !a.IsWebhook() {
		s.g.calls.Request(s, f.Control.SubsessionID, a.SIPRequest(f), a.Done(f, send))
		return true
	}
	g := s.g
	if !g.goTracked(func() {
		switch {
		case a.IsWebhook():
			send(a.CallWebhook(g.ctx, f, s.identity, s.app))
		case g.sip == nil:
			send(errorFor(f, protocol.CodeServiceUnavailable, "no SIP on this gateway"))
		default:
			send(a.SendOut(g.sip, s.identity, f, s.Route(routing.Message, f.Header.Target, f.Header.Ext)))
		}
	}) {
		send(errorFor(f, protocol.CodeServiceUnavailable, "gateway closing"))
	}
	return true
}
