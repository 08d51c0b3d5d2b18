package call

import (
	"strconv"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
)

// Declared actions (the templates package, docs/protocol.md §2.8) inside
// a SIP call: the web side's requests go as SIP requests in the call's
// dialog ([Handler.Request]); the peer's INFOs of a declared Info
// Package, and its NOTIFY, MESSAGE and UPDATE of a receiving action
// (templates.SIPConfig.Receive), come to the web side as requests of
// their action, whose answer is the SIP request's response.

// maxDeclaredPending bounds the peer's requests a call holds for the
// web side's answer; more get 503 at once. The web side has
// templates.Set.AnswerTimeout to answer one before it gets 408.
const maxDeclaredPending = 16

// infoAnswer answers an INFO of a declared package: a *sipgw.InfoRequest,
// or a fake in the unit tests.
type infoAnswer interface {
	Respond(sipgw.Answer)
}

type pendingInfo struct {
	ir    infoAnswer
	a     *templates.Action
	timer *time.Timer
}

// Request sends r, a declared action's request, in the SIP dialog of
// ep's call sub, after the SIP operations the call already queued. done
// gets the final response (or the error: a *sipgw.ResponseError 481
// without such a call, sipgw.ErrCallState for a call that is not an
// answered SIP call, sipgw.ErrOverloaded when the call's queue is full),
// once, from the call's worker or from this goroutine.
func (h *Handler) Request(ep Endpoint, sub string, r sipgw.Request, done func(sipgw.Answer, error)) {
	l := h.lookup(ep, sub)
	if l == nil {
		done(sipgw.Answer{}, &sipgw.ResponseError{Code: protocol.CodeNoSuchCall, Reason: "no such call"})
		return
	}
	c := l.call
	c.mu.Lock()
	fl, ok := c.far.(*farLeg)
	if c.ended || !ok || fl.sc == nil || (fl.phase != outConfirmed && fl.phase != inConfirmed) {
		c.mu.Unlock()
		done(sipgw.Answer{}, sipgw.ErrCallState)
		return
	}
	sc := fl.sc
	queued := fl.enqueue(func() {
		ctx, cancel := opCtx()
		defer cancel()
		done(sc.Request(ctx, r))
	})
	c.mu.Unlock()
	if !queued {
		h.refused[opDeclared].Add(1)
		done(sipgw.Answer{}, sipgw.ErrOverloaded)
	}
}

// goneAnswer answers a request of method whose action a reload took
// away since it came: what the peer gets for one never declared.
func goneAnswer(method string) sipgw.Answer {
	switch method {
	case "", "INFO":
		return sipgw.Answer{Code: 469, Reason: "Bad Info Package"} // RFC 6086 section 4.2.2
	case "NOTIFY":
		return sipgw.Answer{Code: 489, Reason: "Bad Event"} // RFC 6665 section 4.1.3
	}
	return sipgw.Answer{Code: 415, Reason: "Unsupported Media Type"}
}

// Declared sends f, a checked request of the declared call action, to
// the far side of ep's call f.Control.SubsessionID: in a SIP call, as
// its SIP request in the dialog (Request); in a call between web pages,
// to the other page as a request of the action (docs/protocol.md §2.8),
// whose answer comes back, or 408 once wait passed. send gets the
// answer frame, once, and the origin of the other page's frame it
// relays (zero for the gateway's own answers).
func (h *Handler) Declared(ep Endpoint, a *templates.Action, f *protocol.Frame, wait time.Duration, send func(*protocol.Frame, endpoint.Origin)) {
	if l := h.lookup(ep, f.Control.SubsessionID); l != nil {
		c := l.call
		c.mu.Lock()
		if r, ok := c.far.(relay); ok && !c.ended {
			r.declared(l, f, wait, send)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	h.Request(ep, f.Control.SubsessionID, a.SIPRequest(f), a.Done(f, func(out *protocol.Frame) { send(out, endpoint.Origin{}) }))
}

// relayedRequest is a declared request one page of a web-to-web call
// sent the other, waiting for its answer.
type relayedRequest struct {
	f     *protocol.Frame // as its sender sent it
	from  Endpoint        // its sender's session
	send  func(*protocol.Frame, endpoint.Origin)
	timer *time.Timer
}

// declared relays the declared request f of leg l to the other page of
// the answered call. c.mu is held.
func (h relay) declared(l *leg, f *protocol.Frame, wait time.Duration, send func(*protocol.Frame, endpoint.Origin)) {
	c := l.call
	if c.winner == nil || (l != c.caller && l != c.winner) {
		send(errorFrame(f, protocol.CodeMethodNotAllowed, "not in an answered call"), endpoint.Origin{})
		return
	}
	peer := h.peer(l)
	if len(peer.declared) >= maxDeclaredPending {
		h.rlog.Info("declared relay", "request of a declared action refused: too many wait for the other page", "action", f.Header.Action)
		send(errorFrame(f, protocol.CodeServiceUnavailable, "too many pending requests"), endpoint.Origin{})
		return
	}
	out := h.frameTo(peer, protocol.TypeRequest, f.Header.Action, "")
	out.Header.Initiator, out.Header.Target = l.ep.Identity(), peer.ep.Identity()
	out.Header.Ext, out.Payload = f.Header.Ext, f.Payload
	defer c.relaying(endpoint.CallOrigin(l.ep, f))()
	seq, err := endpoint.Relay(peer.ep, out, true, c.originTo(peer.ep))
	if err != nil {
		send(errorFrame(f, protocol.CodeTemporarilyUnavail, ""), endpoint.Origin{})
		return
	}
	corr := "s" + strconv.FormatUint(seq, 10)
	if peer.declared == nil {
		peer.declared = map[string]*relayedRequest{}
	}
	if old := peer.declared[corr]; old != nil {
		// The same request, sent again by a client whose node died
		// before writing its state: the relay was taken once, and the
		// wait starts again.
		old.timer.Stop()
	}
	// The timer outlives the call at most by wait: the sender hears 408
	// for a request the call's end left unanswered.
	peer.declared[corr] = &relayedRequest{f: f, from: l.ep, send: send, timer: time.AfterFunc(wait, func() {
		c.mu.Lock()
		_, ok := peer.declared[corr]
		delete(peer.declared, corr)
		c.mu.Unlock()
		if ok {
			send(errorFrame(f, protocol.CodeRequestTimeout, "no answer from the other page"), endpoint.Origin{})
		}
	})}
}

// declaredAnswer takes leg l's response or error to the other page's
// declared request (declared) back to its sender; anything else of an
// action the relay does not know is dropped. c.mu is held.
func (h relay) declaredAnswer(l *leg, f *protocol.Frame) {
	if f.Control.Type != protocol.TypeResponse && f.Control.Type != protocol.TypeError {
		return
	}
	p, ok := l.declared[f.Control.CorrelationID]
	if !ok || (f.Control.Type == protocol.TypeResponse && f.Header.ResponseCode != 0 && f.Header.ResponseCode < 200) {
		return // nothing pending, or a provisional: the final one follows
	}
	delete(l.declared, f.Control.CorrelationID)
	p.timer.Stop()
	in := p.f
	p.send(&protocol.Frame{
		Control: protocol.Control{Type: f.Control.Type, Package: protocol.PackageCall, SubsessionID: in.Control.SubsessionID,
			CorrelationID: protocol.ClientCorrelation(in), MessageState: f.Control.MessageState},
		Header: protocol.Header{Action: in.Header.Action, Initiator: in.Header.Initiator, Target: in.Header.Target,
			ResponseCode: f.Header.ResponseCode, ErrorCode: f.Header.ErrorCode, Reason: f.Header.Reason, Ext: f.Header.Ext},
		Payload: f.Payload,
	}, l.call.originTo(p.from))
}

// sipDeclared hands the peer's request of a declared action (an INFO of
// its package, a NOTIFY, MESSAGE or UPDATE it receives) to the web side
// w as a request of its action. c.mu is held.
func (fl *farLeg) sipDeclared(w *leg, ev sipgw.Event) {
	ir := fl.sc.declaredInfo(ev)
	method, mark := ev.InfoRequest.Method, ev.InfoRequest.Mark
	if method == "" || method == "INFO" {
		method, mark = "INFO", ev.InfoPackage
	}
	var set *templates.Set
	if fl.h.far.tmpl != nil {
		set = fl.h.far.tmpl()
	}
	a := set.ForRequest(protocol.PackageCall, method, mark)
	switch {
	case a == nil:
		// Declared when the request came, gone with a reload since.
		ir.Respond(goneAnswer(method))
		return
	case w == nil || w.ep.Oracle() || fl.webGone:
		ir.Respond(sipgw.Answer{Code: protocol.CodeTemporarilyUnavail})
		return
	case len(fl.declared) >= maxDeclaredPending:
		fl.rlog().Info("declared info", "request of a declared action refused: too many wait for the web side", "method", method, "action", a.Name)
		ir.Respond(sipgw.Answer{Code: protocol.CodeServiceUnavailable, Reason: "too many pending requests"})
		return
	}
	out := a.IncomingFrame(ev.ContentType, ev.Body, ev.InfoRequest.Headers)
	out.Control.SubsessionID = w.sub
	out.Header.Initiator, out.Header.Target = fl.remoteName(), w.ep.Identity()
	seq, err := w.ep.Send(out, true)
	if err != nil {
		ir.Respond(sipgw.Answer{Code: protocol.CodeTemporarilyUnavail})
		return
	}
	corr := "s" + strconv.FormatUint(seq, 10)
	if fl.declared == nil {
		fl.declared = map[string]pendingInfo{}
	}
	c := fl.c
	fl.declared[corr] = pendingInfo{ir: ir, a: a, timer: time.AfterFunc(set.AnswerTimeout(), func() {
		c.mu.Lock()
		delete(fl.declared, corr)
		c.mu.Unlock()
		ir.Respond(sipgw.Answer{Code: protocol.CodeRequestTimeout, Reason: "no answer from the web side"})
	})}
}

// declaredAnswer takes the web side's response or error to a declared
// action's request (sipDeclared) as the SIP request's response; anything else
// of an action the call does not know is dropped. c.mu is held.
func (fl *farLeg) declaredAnswer(f *protocol.Frame) {
	if f.Control.Type != protocol.TypeResponse && f.Control.Type != protocol.TypeError {
		return
	}
	p, ok := fl.declared[f.Control.CorrelationID]
	if !ok {
		return
	}
	if f.Control.Type == protocol.TypeResponse && f.Header.ResponseCode != 0 && f.Header.ResponseCode < 200 {
		return // a provisional: the final one follows
	}
	delete(fl.declared, f.Control.CorrelationID)
	p.timer.Stop()
	p.ir.Respond(p.a.IncomingAnswer(f))
}
