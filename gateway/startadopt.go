package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Adoptions at start (docs/cluster.md "Start-up"): a node started again
// on its store adopts back the calls whose records still name it (it
// was killed, or its lease expired unseen, and nobody took them). A SIP
// call's adoption is a target refresh its peer may leave unanswered
// (sipAdoptTimeout): made one after the other before the node listened,
// they held its start for tens of seconds a call (test/interop
// TestRTPEngineGatewayCrash waited 60 s for one).
// New lists the calls (store reads only) and notes each leg of each as
// being adopted, then returns: the node listens while the adoptions
// run, startAdoptions at a time. What reaches a leg of a call being
// adopted (its client's frames, a frame another node forwards for it,
// its session's end) waits behind the adoption, in the order it came,
// and is handled once the adoption is over: the call is then here, or
// it is not (ended, or adopted elsewhere) and the frame is handled as
// for any call that is gone. Other sessions, and the other calls of
// the same session, are not held.

// startAdoptions bounds the adoptions run at once at start: each may
// wait sipAdoptTimeout for its peer.
const startAdoptions = 16

// ownCall is a call record naming this node, listed at start.
type ownCall struct {
	ck  string
	rec *callRecord
	rev uint64
	// waiting is what waits for its adoption (its legs noted).
	waiting *adoptingCall
}

// adopting is the calls being adopted at start, by their legs.
type adopting struct {
	mu   sync.Mutex
	legs map[legID]*adoptingCall
	// done is closed once every adoption of the start is over.
	done chan struct{}
}

// adoptingCall is a call being adopted at start: what waits for it.
type adoptingCall struct {
	legs  []legID
	queue []func()
}

func newAdopting() *adopting {
	return &adopting{legs: map[legID]*adoptingCall{}, done: make(chan struct{})}
}

// add notes the legs of a call being adopted.
func (a *adopting) add(legs []legID) *adoptingCall {
	c := &adoptingCall{legs: legs}
	a.mu.Lock()
	for _, l := range legs {
		a.legs[l] = c
	}
	a.mu.Unlock()
	return c
}

// after queues f behind the adoption of the call of leg id, if one is
// under way: queued says so, full that the queue holds maxHeld already
// (f is then not queued).
func (a *adopting) after(id legID, f func()) (queued, full bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.legs[id]
	if c == nil {
		return false, false
	}
	if len(c.queue) >= maxHeld {
		return true, true
	}
	c.queue = append(c.queue, f)
	return true, false
}

// afterSession queues f behind the adoption of each call with a leg of
// the session id under way.
func (a *adopting) afterSession(id string, f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[*adoptingCall]bool{}
	for l, c := range a.legs {
		if l.session == id && !seen[c] {
			seen[c] = true
			c.queue = append(c.queue, f)
		}
	}
}

// finish runs what waited for c's adoption, in order, what comes
// meanwhile included (so nothing overtakes it), then forgets c.
func (a *adopting) finish(c *adoptingCall) {
	for {
		a.mu.Lock()
		q := c.queue
		c.queue = nil
		if len(q) == 0 {
			for _, l := range c.legs {
				if a.legs[l] == c {
					delete(a.legs, l)
				}
			}
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		for _, f := range q {
			f()
		}
	}
}

// pending counts the calls being adopted.
func (a *adopting) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[*adoptingCall]bool{}
	for _, c := range a.legs {
		seen[c] = true
	}
	return len(seen)
}

// listOwn lists the call records naming this node, at start, and notes
// their legs as being adopted.
func (r *callRepl) listOwn() []ownCall {
	ctx, cancel := context.WithTimeout(r.g.ctx, 4*storeTimeout)
	defer cancel()
	keys, err := r.g.store.Keys(ctx, callPrefix)
	if err != nil {
		r.g.log.Warn("calls of an earlier life not listed: they end", "err", err)
		return nil
	}
	var own []ownCall
	for _, k := range keys {
		if !strings.HasPrefix(k, callPrefix) {
			continue
		}
		rec, ck, rev, err := r.read(ctx, k)
		if err != nil || ck != k || rec.Call == nil && rec.SIP == nil || rec.Host != r.host {
			continue
		}
		own = append(own, ownCall{ck: ck, rec: rec, rev: rev, waiting: r.starting.add(recordLegs(rec))})
	}
	return own
}

// recordLegs returns the web legs of the call of rec.
func recordLegs(rec *callRecord) []legID {
	if rec.Call != nil {
		legs := []legID{{rec.Call.Caller.Session, rec.Call.Caller.Sub}}
		for _, l := range rec.Call.Callees() {
			legs = append(legs, legID{l.Session, l.Sub})
		}
		return legs
	}
	var sn call.SIPSnapshot
	if json.Unmarshal(rec.SIP.App, &sn) != nil {
		return nil // not adopted either (takeSIP)
	}
	legs := []legID{{sn.Web.Session, sn.Web.Sub}}
	for _, l := range sn.Forks {
		// The other web sessions a ringing incoming call rings.
		legs = append(legs, legID{l.Session, l.Sub})
	}
	return legs
}

// adoptListed adopts back the calls own lists, startAdoptions at a time,
// each leg's waiting frames handled at its call's end of adoption, and
// returns once all are over.
func (r *callRepl) adoptListed(own []ownCall) {
	var mu sync.Mutex
	n := 0
	eachBounded(startAdoptions, own, func(oc ownCall) {
		defer r.starting.finish(oc.waiting)
		ctx, cancel := context.WithTimeout(r.g.ctx, 4*storeTimeout)
		defer cancel()
		if err := r.take(ctx, oc.ck, oc.rec, oc.rev); err != nil {
			r.g.log.Info("a call of an earlier life not adopted back", "key", oc.ck, "err", err)
			return
		}
		mu.Lock()
		n++
		mu.Unlock()
	})
	if n > 0 {
		r.g.log.Info("calls of an earlier life adopted back", "calls", n)
	}
	if r.g.node != nil {
		r.rerouteRestored()
	}
}

// startAdopting lists the calls of this node's earlier life, their legs
// noted as being adopted, and adopts them back on a goroutine of the
// gateway's: New returns, and the node listens, without waiting for
// them.
func (r *callRepl) startAdopting() {
	own := r.listOwn()
	if !r.g.goTracked(func() {
		defer close(r.starting.done)
		r.adoptListed(own)
	}) {
		for _, oc := range own {
			r.starting.finish(oc.waiting)
		}
		close(r.starting.done)
	}
}

// waitStart returns once the adoptions of the start are over, or ctx
// ends.
func (r *callRepl) waitStart(ctx context.Context) {
	select {
	case <-r.starting.done:
	case <-ctx.Done():
	}
}

// behindAdoption queues do, the handling of f (a call frame of the
// session ep), behind the adoption at start of f's call, if one is
// under way, and reports whether it did. With the queue full, a request
// is answered 503.
func (g *Gateway) behindAdoption(ep endpoint.Endpoint, f *protocol.Frame, do func()) bool {
	if g.repl == nil || f.EffectivePackage() != protocol.PackageCall {
		return false
	}
	queued, full := g.repl.starting.after(legID{ep.ID(), f.Control.SubsessionID}, do)
	if full {
		g.rlog.Warn("call adoption", "call frame refused: too many wait for its call's adoption", "session_id", ep.ID(), "subsession_id", f.Control.SubsessionID)
		if f.Control.Type == protocol.TypeRequest {
			_, _ = ep.Send(errorFor(f, protocol.CodeServiceUnavailable, "too many frames wait for the call's adoption"), false)
		}
	}
	return queued
}

// endedBehindAdoption ends, once the adoptions at start of the calls of
// the session ep are over, the calls they brought back: the session
// ended while they were under way (stopped: callsOfEnded's).
func (g *Gateway) endedBehindAdoption(ep endpoint.Endpoint, stopped bool) {
	if g.repl == nil {
		return
	}
	g.repl.starting.afterSession(ep.ID(), func() { g.callsOfEnded(ep, stopped) })
}

// callsOfEnded tells the call handler that the session ep ended; stopped:
// by a shutdown that keeps its record, whose calls between web sessions
// stay in theirs for the next run (call.Handler.SessionStopped).
func (g *Gateway) callsOfEnded(ep endpoint.Endpoint, stopped bool) {
	if stopped {
		g.calls.SessionStopped(ep)
	} else {
		g.calls.SessionEnded(ep)
	}
}
