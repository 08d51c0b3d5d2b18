package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
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

// peerRequest is the peer's request as the web side sees it: what
// sip.go (onDeclaredMessage) makes of a *sipgw.InfoRequest, or a fake in
// the tests.
type peerRequest struct {
	method, mark, identity, from string
	// frame is the request frame of action a that hands it on.
	frame func(a *templates.Action) *protocol.Frame
	// answer sends the SIP response that the web side's answer f to a
	// request of a makes; refuse, one of the gateway's own.
	answer func(a *templates.Action, f *protocol.Frame)
	refuse func(code int, reason string)
}

type inboundRequest struct {
	ir      peerRequest
	a       *templates.Action
	keys    []inboundKey
	left    int             // copies not answered yet
	refusal *protocol.Frame // the first error frame
	timer   *time.Timer
	done    bool // answered: its copies are out of pending
}

// askWeb asks the web side the peer's request ir.
func (g *Gateway) askWeb(ir peerRequest) {
	set := g.tmpl.Load()
	a := set.ForRequest(protocol.PackageMessaging, ir.method, ir.mark)
	if a == nil {
		// Receiving when sipgw asked, gone with a reload since.
		ir.refuse(415, "")
		return
	}
	g.mu.Lock()
	sessions := append([]*Session(nil), g.byIdentity[ir.identity]...)
	g.mu.Unlock()
	if len(sessions) == 0 {
		ir.refuse(protocol.CodeTemporarilyUnavail, "")
		return
	}
	d := &g.inbound
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n >= maxInboundDeclared {
		g.rlog.Info("declared inbound", "request of a declared action refused: too many wait for the web side", "action", a.Name)
		ir.refuse(protocol.CodeServiceUnavailable, "too many pending requests")
		return
	}
	if d.pending == nil {
		d.pending = map[inboundKey]*inboundRequest{}
	}
	r := &inboundRequest{ir: ir, a: a}
	// Sent under d.mu: an answer, which takes it, cannot come before its
	// copy is in pending.
	for _, s := range sessions {
		out := ir.frame(a)
		out.Header.Initiator, out.Header.Target = ir.from, ir.identity
		seq, err := s.Send(out, true)
		if err != nil {
			continue
		}
		k := inboundKey{s.ID(), "s" + strconv.FormatUint(seq, 10)}
		d.pending[k] = r
		r.keys = append(r.keys, k)
	}
	if len(r.keys) == 0 {
		ir.refuse(protocol.CodeTemporarilyUnavail, "")
		return
	}
	r.left = len(r.keys)
	d.n++
	r.timer = time.AfterFunc(set.AnswerTimeout(), func() {
		d.mu.Lock()
		done := d.finish(r)
		d.mu.Unlock()
		if done {
			ir.refuse(protocol.CodeRequestTimeout, "no answer from the web side")
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
		r.ir.answer(r.a, answer)
	}
	return true
}

// inboundEnded answers for s, a session that ended with copies of the
// peer's requests unanswered: each counts as refused, and a request that
// no other session can still answer gets its first refusal, or 480,
// now rather than at the timeout.
func (g *Gateway) inboundEnded(s *Session) {
	d := &g.inbound
	var done []*inboundRequest
	d.mu.Lock()
	for k, r := range d.pending {
		if k.session != s.ID() {
			continue
		}
		delete(d.pending, k)
		r.left--
		if r.left == 0 && d.finish(r) {
			done = append(done, r)
		}
	}
	d.mu.Unlock()
	for _, r := range done {
		r.timer.Stop()
		if r.refusal != nil {
			r.ir.answer(r.a, r.refusal)
		} else {
			r.ir.refuse(protocol.CodeTemporarilyUnavail, "")
		}
	}
}
