package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
)

// A SIP peer's MESSAGE of a declared messaging action that receives
// (templates' sip.receive) to a web identity, outside any dialog
// (docs/protocol.md §2.8): it goes as a request of the action to every
// session of the identity on this node. The first 2xx answers the
// MESSAGE; when every session refused it, the first refusal does; past
// templates.answer_timeout, 408.

// maxInboundDeclared bounds the peer's requests waiting for the web
// side across the gateway; more get 503 at once.
const maxInboundDeclared = 1024

type inboundDeclared struct {
	mu      sync.Mutex
	pending map[inboundKey]*inboundRequest
	n       int // requests in pending
}

// inboundKey is one session's copy of a request: its session and the
// correlation the gateway gave it there.
type inboundKey struct{ session, corr string }

// responder answers the peer's request: a *sipgw.InfoRequest, or a fake
// in the tests.
type responder interface{ Respond(sipgw.Answer) }

type inboundRequest struct {
	ir      responder
	a       *templates.Action
	keys    []inboundKey
	left    int             // copies not answered yet
	refusal *protocol.Frame // the first error frame
	timer   *time.Timer
	done    bool // answered: its copies are out of pending
}

// onDeclaredMessage takes the peer's MESSAGE (sipgw.OnDeclared).
func (g *Gateway) onDeclaredMessage(ir *sipgw.InfoRequest) { g.askWeb(ir, ir) }

// askWeb asks the web side the peer's request in (its fields) and
// answers it with ir.
func (g *Gateway) askWeb(in *sipgw.InfoRequest, ir responder) {
	set := g.tmpl.Load()
	a := set.ForRequest(protocol.PackageMessaging, in.Method, in.Mark)
	if a == nil {
		// Receiving when sipgw asked, gone with a reload since.
		ir.Respond(sipgw.Answer{Code: 415})
		return
	}
	g.mu.Lock()
	sessions := append([]*Session(nil), g.byIdentity[in.Identity]...)
	g.mu.Unlock()
	if len(sessions) == 0 {
		ir.Respond(sipgw.Answer{Code: protocol.CodeTemporarilyUnavail})
		return
	}
	d := &g.inbound
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n >= maxInboundDeclared {
		g.rlog.Info("declared inbound", "request of a declared action refused: too many wait for the web side", "action", a.Name)
		ir.Respond(sipgw.Answer{Code: protocol.CodeServiceUnavailable, Reason: "too many pending requests"})
		return
	}
	if d.pending == nil {
		d.pending = map[inboundKey]*inboundRequest{}
	}
	r := &inboundRequest{ir: ir, a: a}
	// Sent under d.mu: an answer, which takes it, cannot come before its
	// copy is in pending.
	for _, s := range sessions {
		out := a.IncomingFrame(in.ContentType, in.Body, in.Headers)
		out.Header.Initiator, out.Header.Target = in.From, in.Identity
		seq, err := s.Send(out, true)
		if err != nil {
			continue
		}
		k := inboundKey{s.ID(), "s" + strconv.FormatUint(seq, 10)}
		d.pending[k] = r
		r.keys = append(r.keys, k)
	}
	if len(r.keys) == 0 {
		ir.Respond(sipgw.Answer{Code: protocol.CodeTemporarilyUnavail})
		return
	}
	r.left = len(r.keys)
	d.n++
	r.timer = time.AfterFunc(set.AnswerTimeout(), func() {
		d.mu.Lock()
		done := d.finish(r)
		d.mu.Unlock()
		if done {
			ir.Respond(sipgw.Answer{Code: protocol.CodeRequestTimeout, Reason: "no answer from the web side"})
		}
	})
}

// finish forgets r; false when it was answered already. d.mu is held.
func (d *inboundDeclared) finish(r *inboundRequest) bool {
	if r.done {
		return false
	}
	r.done = true
	for _, k := range r.keys {
		delete(d.pending, k)
	}
	d.n--
	return true
}

// inboundAnswer takes session s's response or error to a copy of the
// peer's request (onDeclaredMessage), and reports whether f was one.
func (g *Gateway) inboundAnswer(s *Session, f *protocol.Frame) bool {
	if f.Control.Type != protocol.TypeResponse && f.Control.Type != protocol.TypeError {
		return false
	}
	d := &g.inbound
	d.mu.Lock()
	r, ok := d.pending[inboundKey{s.ID(), f.Control.CorrelationID}]
	if !ok || (f.Control.Type == protocol.TypeResponse && f.Header.ResponseCode != 0 && f.Header.ResponseCode < 200) {
		d.mu.Unlock()
		return ok // a provisional: the final one follows
	}
	delete(d.pending, inboundKey{s.ID(), f.Control.CorrelationID})
	r.left--
	answer := f
	switch {
	case f.Control.Type == protocol.TypeResponse:
	case r.refusal == nil && r.left > 0:
		r.refusal = f
		answer = nil
	case r.left > 0:
		answer = nil
	case r.refusal != nil:
		answer = r.refusal
	}
	if answer != nil && !d.finish(r) {
		answer = nil
	}
	d.mu.Unlock()
	if answer != nil {
		r.timer.Stop()
		r.ir.Respond(r.a.IncomingAnswer(answer))
	}
	return true
}
