package call

import (
	"errors"
	"strconv"
	"strings"
)

// Replicated calls: an answered call between web sessions is what its
// snapshot says, so that another node (or this one, restarted) goes on
// with it when the node hosting it dies (docs/cluster.md, "A dead
// node"). What is outstanding at that moment (a re-offer, a transfer, a
// declared request) is not in it: its answer finds nothing to go to.

// Snapshot is an answered relayed call as another node rebuilds it.
type Snapshot struct {
	// Target is the callee as the caller named it.
	Target string      `json:"target"`
	Caller LegSnapshot `json:"caller"`
	Callee LegSnapshot `json:"callee"`
}

// LegSnapshot is one side of an answered relayed call.
type LegSnapshot struct {
	Session  string `json:"session"`
	Identity string `json:"identity"`
	Oracle   bool   `json:"oracle,omitempty"`
	Sub      string `json:"sub"`
	// StartCorr is the correlation of the call's first start on this side.
	StartCorr string `json:"start_corr,omitempty"`
	// AnswerCorr is the correlation of the offer this side last answered,
	// which the peer's complete is relayed with.
	AnswerCorr string `json:"answer_corr,omitempty"`
}

// ErrLegTaken is Restore's answer when a leg of the snapshot is in a call
// here already.
var ErrLegTaken = errors.New("call: a leg of the restored call is in a call here")

// Restore rebuilds an answered relayed call from its snapshot, its legs'
// sessions being caller and callee. The call goes on as if it had been
// answered here: its frames are relayed, and Options.Replicate hears of
// its changes and its end.
func (h *Handler) Restore(sn Snapshot, caller, callee Endpoint) error {
	c := &Call{target: sn.Target, far: relay{h}}
	c.caller = restoredLeg(c, caller, sn.Caller)
	w := restoredLeg(c, callee, sn.Callee)
	c.callees, c.winner = []*leg{w}, w
	c.replicated = &sn
	// The call counts here now, against the limits of its legs' sessions
	// here (over the limit, it goes on uncounted: it was admitted).
	for _, l := range []*leg{c.caller, w} {
		l.held = acquireCall(l.ep)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ck, wk := legKey{caller.ID(), sn.Caller.Sub}, legKey{callee.ID(), sn.Callee.Sub}
	if h.legs[ck] != nil || h.legs[wk] != nil {
		for _, l := range []*leg{c.caller, w} {
			if l.held {
				releaseCall(l.ep)
			}
		}
		return ErrLegTaken
	}
	h.legs[ck], h.legs[wk] = c.caller, w
	h.calls[c] = struct{}{}
	// A node restarted hands out its ids from 1 again: never one its
	// restored calls hold.
	if n, err := strconv.ParseUint(strings.TrimPrefix(sn.Callee.Sub, h.opts.SubsessionPrefix), 10, 64); err == nil && strings.HasPrefix(sn.Callee.Sub, h.opts.SubsessionPrefix) {
		for cur := h.next.Load(); cur < n && !h.next.CompareAndSwap(cur, n); cur = h.next.Load() {
		}
	}
	return nil
}

// Drop forgets the call whose leg is (session, sub) without a word to
// its legs: another node hosts it now, and this copy must not relay.
func (h *Handler) Drop(session, sub string) {
	h.mu.Lock()
	l := h.legs[legKey{session, sub}]
	h.mu.Unlock()
	if l == nil {
		return
	}
	c := l.call
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if fl, ok := c.far.(*farLeg); ok {
		fl.dropSIP()
		return
	}
	r, ok := c.far.(relay)
	if !ok {
		return
	}
	c.replicated = nil // the record is the other node's
	r.end(c)
}

// Has reports whether ep's subsession sub is a leg of a call here.
func (h *Handler) Has(ep Endpoint, sub string) bool { return h.lookup(ep, sub) != nil }

func restoredLeg(c *Call, ep Endpoint, ls LegSnapshot) *leg {
	return &leg{call: c, ep: ep, sub: ls.Sub, state: legAnswered, startCorr: ls.StartCorr, answerCorr: ls.AnswerCorr}
}

// snapshotLocked returns c's snapshot; c.mu is held and c answered.
func snapshotLocked(c *Call) Snapshot {
	return Snapshot{Target: c.target, Caller: legSnapshot(c.caller), Callee: legSnapshot(c.winner)}
}

func legSnapshot(l *leg) LegSnapshot {
	return LegSnapshot{Session: l.ep.ID(), Identity: l.ep.Identity(), Oracle: l.ep.Oracle(), Sub: l.sub,
		StartCorr: l.startCorr, AnswerCorr: l.answerCorr}
}

// replicateLocked tells Options.Replicate of an answered call's new state,
// or of its end; c.mu is held.
func (h *Handler) replicateLocked(c *Call) {
	if h.opts.Replicate == nil || c.winner == nil {
		return
	}
	if c.ended {
		if c.replicated != nil {
			h.opts.Replicate(*c.replicated, true)
			c.replicated = nil
		}
		return
	}
	sn := snapshotLocked(c)
	if c.replicated != nil && *c.replicated == sn {
		return
	}
	c.replicated = &sn
	h.opts.Replicate(sn, false)
}
