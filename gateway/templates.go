package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/templates"
)

// Declared actions (the templates section, docs/protocol.md §2.8): a
// client request of one is checked against its template and sent on as
// its SIP request (in the call's dialog for package call, routed as a
// message otherwise) or to its webhook; the answer comes back as the
// request's response or error. The peer's INFOs of a declared package
// come the other way through the call handler (call/template.go).

// declared handles f, a request, when its action is a declared one, and
// reports whether it was. It is checked and counted here, on the
// session's owner; a call action whose call another node hosts is
// forwarded there (onInbound, declaredInbound).
func (s *Session) declared(f *protocol.Frame) bool {
	a := s.g.tmpl.Load().Lookup(f.EffectivePackage(), f.Header.Action)
	if a == nil {
		return false
	}
	if err := a.Check(f); err != nil {
		s.g.answerDeclared(s, errorFor(f, protocol.CodeOf(err), protocol.ReasonOf(err)), endpoint.Origin{})
		return true
	}
	// Each costs the gateway a SIP transaction or an HTTP request: it
	// counts as a message against the session's quota.
	if !s.quota.AllowMessage() {
		s.g.answerDeclared(s, errorFor(f, protocol.CodeServiceUnavailable, "message rate limited"), endpoint.Origin{})
		return true
	}
	if a.Package == protocol.PackageCall && !a.IsWebhook() {
		if host := s.hostOf(f); host != "" {
			s.forward(host, f)
			return true
		}
		s.g.inDialog(s, a, f)
		return true
	}
	g := s.g
	send := func(out *protocol.Frame) { g.answerDeclared(s, out, endpoint.Origin{}) }
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

// inDialog sends the checked request f of a call action a in ep's call:
// in its SIP dialog, or to the other page of a web-to-web call; the
// answer goes to ep.
func (g *Gateway) inDialog(ep endpoint.Endpoint, a *templates.Action, f *protocol.Frame) {
	g.calls.Declared(ep, a, f, g.tmpl.Load().AnswerTimeout(), func(out *protocol.Frame, o endpoint.Origin) { g.answerDeclared(ep, out, o) })
}

// receives reports whether a declared action receives an incoming SIP
// request of method with its mark (sipgw.SetReceives): a call action in
// a dialog, a messaging action outside any.
func (g *Gateway) receives(inDialog bool, method, mark string) bool {
	pkg := protocol.PackageMessaging
	if inDialog {
		pkg = protocol.PackageCall
	}
	return g.tmpl.Load().ForRequest(pkg, method, mark) != nil
}

// declaredAnswers counts answers by action and class of code.
type declaredAnswers struct{ *prometheus.CounterVec }

func newDeclaredAnswers() declaredAnswers {
	return declaredAnswers{prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jsonrtc_declared_answers_total",
		Help: "Answers to requests of declared actions (templates), by action and class of code (2xx ... 6xx), the gateway's own refusals included."},
		[]string{"action", "class"})}
}

// answerDeclared sends out, the answer to a declared action's request,
// to ep and counts it; o is the origin of the other page's answer it
// relays (relays.go).
func (g *Gateway) answerDeclared(ep endpoint.Endpoint, out *protocol.Frame, o endpoint.Origin) {
	code := out.Header.ResponseCode
	if out.Control.Type == protocol.TypeError {
		code = out.Header.ErrorCode
	}
	g.declaredAnswers.WithLabelValues(string(out.Header.Action), strconv.Itoa(code/100)+"xx").Inc()
	endpoint.Relay(ep, out, false, o)
}

// declaredInbound handles, on the node that hosts the call, a request of
// a declared call action that its session's owner forwarded; false when
// f is none.
func (g *Gateway) declaredInbound(ep endpoint.Endpoint, f *protocol.Frame) bool {
	if f.Control.Type != protocol.TypeRequest {
		return false
	}
	a := g.tmpl.Load().Lookup(f.EffectivePackage(), f.Header.Action)
	if a == nil || a.Package != protocol.PackageCall || a.IsWebhook() {
		return false
	}
	if err := a.Check(f); err != nil {
		// This node's templates differ from the owner's (a reload on one).
		g.answerDeclared(ep, errorFor(f, protocol.CodeOf(err), protocol.ReasonOf(err)), endpoint.Origin{})
		return true
	}
	g.inDialog(ep, a, f)
	return true
}
