package call

import "github.com/jsonrtc/jsonrtc/protocol"

// Resend is for a request of a call between web sessions (a re-offer, a
// transfer) that this host relayed to session id, where it got the
// correlation id corr, and that goes to the session again: its node died
// before writing it, or the session moved on first (the gateway keeps
// such deliveries until written, docs/cluster.md "Delivery across
// nodes"). The request's answer carries the correlation id the request
// gets where it is taken now, which the call must know to map the answer
// back to its sender. Resend returns the function that tells the call
// that correlation id, or that the request was not delivered (its sender
// then gets 480 and may send it again, the call free for another); nil
// when no request of a call waits for an answer under corr (answered or
// ended meanwhile: nothing to send again).
//
// sub is the subsession of session id's leg the request went on: only
// that call's lock is taken (a session in two calls, one of them
// relaying a request that waits for this one to go, would stall it).
func (h *Handler) Resend(id, sub, corr string) func(newCorr string, delivered bool) {
	h.mu.Lock()
	l := h.legs[legKey{id, sub}]
	h.mu.Unlock()
	if l == nil {
		return nil
	}
	c := l.call
	c.mu.Lock()
	other := relay{h}.peer(l)
	var p *pending
	action := protocol.ActionStart
	switch {
	case c.ended || other == nil:
	case other.reoffer != nil && other.reoffer.there == corr:
		p = other.reoffer
	case other.transfer != nil && other.transfer.there == corr:
		p, action = other.transfer, protocol.ActionTransfer
	}
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return func(newCorr string, delivered bool) { h.resent(other, p, action, newCorr, delivered) }
}

// resent applies what became of a request Resend was asked of: p, the
// request of other's side, got newCorr where it was taken, or was not
// delivered.
func (h *Handler) resent(other *leg, p *pending, action protocol.Action, newCorr string, delivered bool) {
	c := other.call
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || other.reoffer != p && other.transfer != p {
		return // answered, or the call ended, meanwhile
	}
	defer h.replicateLocked(c)
	if delivered {
		p.there = newCorr
		return
	}
	if other.reoffer == p {
		other.reoffer = nil
	} else {
		other.transfer = nil
	}
	out := h.frameTo(other, protocol.TypeError, action, p.here)
	out.Header.ErrorCode, out.Header.Reason = protocol.CodeTemporarilyUnavail, peerUnreachable
	h.send(other, out, false)
}
