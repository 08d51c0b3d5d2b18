package call

import (
	"strconv"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
)

// Declared actions (the templates package, docs/protocol.md §2.8) inside
// a SIP call: the web side's requests go as SIP requests in the call's
// dialog ([Handler.Request]); the peer's INFOs of a declared Info
// Package come to the web side as requests of their action, whose
// answer is the INFO's response.

// maxDeclaredPending bounds the peer's INFOs a call holds for the web
// side's answer; more get 503 at once.
const maxDeclaredPending = 16

// declaredWait is how long the web side has to answer one before the
// INFO gets 408: well inside the peer's Timer F (32 s).
var declaredWait = 20 * time.Second

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

// sipDeclared hands the peer's INFO of a declared package to the web
// side w as a request of its action. c.mu is held.
func (fl *farLeg) sipDeclared(w *leg, ev sipgw.Event) {
	ir := fl.sc.declaredInfo(ev)
	var a *templates.Action
	if fl.h.far.tmpl != nil {
		a = fl.h.far.tmpl().ForInfo(ev.InfoPackage)
	}
	switch {
	case a == nil || a.Package != protocol.PackageCall:
		// Declared when the INFO came, gone with a reload since.
		ir.Respond(sipgw.Answer{Code: 469, Reason: "Bad Info Package"})
		return
	case w == nil || w.ep.Oracle() || fl.webGone:
		ir.Respond(sipgw.Answer{Code: protocol.CodeTemporarilyUnavail})
		return
	case len(fl.declared) >= maxDeclaredPending:
		fl.rlog().Info("declared info", "INFO of a declared package refused: too many wait for the web side", "package", ev.InfoPackage)
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
	fl.declared[corr] = pendingInfo{ir: ir, a: a, timer: time.AfterFunc(declaredWait, func() {
		c.mu.Lock()
		delete(fl.declared, corr)
		c.mu.Unlock()
		ir.Respond(sipgw.Answer{Code: protocol.CodeRequestTimeout, Reason: "no answer from the web side"})
	})}
}

// declaredAnswer takes the web side's response or error to a declared
// action's request (sipDeclared) as the INFO's response; anything else
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
