package gateway

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// A call's frames wait while its host is dead. Until the node a session
// is on sees the host's lease gone and a node adopts the call
// (callrepl.go), a frame forwarded to the host finds nobody; answered
// 480 then, a re-offer or hang-up of the gap was lost although the call
// went on on its adopter a moment later. Such frames are held instead,
// per session and in the order they came, and handed to the call's host
// once one answers: the dead host's adopter, or the host itself when
// it answers again (its route back). A frame of a call with frames held
// goes behind them. The hold is bounded in count (a full hold answers a
// request 503) and in time (holdFor: the lease's expiry, read a third
// of it late, and the adoption's wait); a request still held at its
// bound is answered 480 (docs/cluster.md "A dead node").

// maxHeld bounds the frames a session holds for its calls' dead hosts.
const maxHeld = 32

// The outcomes of a held frame, in jsonrtc_cluster_requests_total
// (kind="held").
const (
	kindHeld     = "held"
	heldFull     = "full"      // refused: the session holds maxHeld
	heldHeld     = "held"      // taken into the hold
	heldDone     = "delivered" // handed to the call's host
	heldGone     = "gone"      // the call has no record: nothing to adopt
	heldTimedOut = "timeout"   // answered 480 at its bound
)

// callHold is a session's held frames.
type callHold struct {
	mu      sync.Mutex
	frames  []heldFrame
	running bool // a goroutine hands the frames over (handOver)
	// taken: call frames hosts took, until they confirm them (takenfwd.go).
	taken []takenFrame
}

type heldFrame struct {
	f     *protocol.Frame
	host  string // the host it was forwarded to
	until time.Time
	// maybe: a try timed out, so host may have taken it: it is not sent
	// there again (no frame twice), only to an adopter once host is dead.
	maybe bool
}

// holdFor bounds the time a frame is held.
func (g *Gateway) holdFor() time.Duration {
	ttl := g.node.LeaseTTL()
	return ttl + ttl/3 + g.resumeBudget()
}

// holding reports whether s holds frames of f's call; if so, f goes
// behind them (or, the hold full, is refused).
func (s *Session) holding(f *protocol.Frame) bool {
	if f.EffectivePackage() != protocol.PackageCall {
		return false
	}
	h := &s.held
	h.mu.Lock()
	var host string
	for _, hf := range h.frames {
		if hf.f.Control.SubsessionID == f.Control.SubsessionID {
			host = hf.host
		}
	}
	h.mu.Unlock()
	if host == "" {
		return false
	}
	s.hold(host, f, false)
	return true
}

// hold takes f, a call frame of s's client that its call's host did not
// answer, into the hold (maybe: heldFrame's); false when the call cannot move (no call
// records), and f is to be refused as before.
func (s *Session) hold(host string, f *protocol.Frame, maybe bool) bool {
	g := s.g
	if g.repl == nil || f.EffectivePackage() != protocol.PackageCall {
		return false
	}
	h := &s.held
	h.mu.Lock()
	if len(h.frames) >= maxHeld {
		h.mu.Unlock()
		g.metrics.cluster.WithLabelValues(kindHeld, heldFull).Inc()
		s.rlog.Warn("call hold", "call frame refused: too many held for dead hosts", "host", host, "subsession_id", f.Control.SubsessionID)
		if f.Control.Type == protocol.TypeRequest {
			s.Send(errorFor(f, protocol.CodeServiceUnavailable, "too many frames wait for the call's node"), false)
		}
		return true
	}
	h.frames = append(h.frames, heldFrame{f: f, host: host, until: time.Now().Add(g.holdFor()), maybe: maybe})
	start := !h.running
	h.running = true
	h.mu.Unlock()
	g.metrics.cluster.WithLabelValues(kindHeld, heldHeld).Inc()
	if start && !g.goTracked(s.handOver) {
		s.dropHeld("the gateway is shutting down")
	}
	return true
}

// handOver hands the held frames over one at a time, in order, trying
// the first again (backing off up to a second) until it is delivered or
// its bound passes.
func (s *Session) handOver() {
	g := s.g
	h := &s.held
	wait := 50 * time.Millisecond
	for {
		h.mu.Lock()
		if len(h.frames) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		// Left in the hold while tried, so that the call's next frame
		// goes behind it (holding).
		hf := h.frames[0]
		h.mu.Unlock()
		done, maybe := s.handOverOne(hf)
		if maybe {
			h.mu.Lock()
			if i := h.index(hf.f); i >= 0 {
				h.frames[i].maybe = true
			}
			h.mu.Unlock()
		}
		if !done && time.Now().After(hf.until) {
			g.metrics.cluster.WithLabelValues(kindHeld, heldTimedOut).Inc()
			s.rlog.Warn("call hold", "held call frame not delivered: its call's node is unreachable", "host", hf.host, "subsession_id", hf.f.Control.SubsessionID)
			s.refuseForward(hf.f, "the call's node is unreachable")
			done = true
		}
		if done {
			h.mu.Lock()
			if i := h.index(hf.f); i >= 0 {
				h.frames = slices.Delete(h.frames, i, i+1)
			}
			h.mu.Unlock()
			wait = 50 * time.Millisecond
			continue
		}
		if !sleepCtx(g.ctx, wait) {
			s.dropHeld("the gateway is shutting down")
			return
		}
		wait = min(2*wait, time.Second)
	}
}

// index returns the place of f in the hold (-1: none). Frames a dead
// host took go in front of the one being handed over (requeueTaken).
// h.mu is held.
func (h *callHold) index(f *protocol.Frame) int {
	return slices.IndexFunc(h.frames, func(hf heldFrame) bool { return hf.f == f })
}

// dropHeld answers the held requests 503 and empties the hold: the
// gateway is closing.
func (s *Session) dropHeld(why string) {
	h := &s.held
	h.mu.Lock()
	frames := h.frames
	h.frames, h.running = nil, false
	h.mu.Unlock()
	for _, hf := range frames {
		if hf.f.Control.Type == protocol.TypeRequest {
			s.Send(errorFor(hf.f, protocol.CodeServiceUnavailable, why), false)
		}
	}
}

// handOverOne tries to hand hf over to its call's host: the route's
// (moved by an adoption), else the one it was forwarded to; adopting
// the call (here, or reading who did) once that host is dead. It
// reports whether hf is done with (delivered, or answered), and whether
// a try timed out (heldFrame's maybe).
func (s *Session) handOverOne(hf heldFrame) (done, maybe bool) {
	g := s.g
	if s.requeueDeadTaken() > 0 {
		return false, false // they go first
	}
	f := hf.f
	sub := f.Control.SubsessionID
	k := routeKey{protocol.PackageCall, sub}
	host := hf.host
	s.mu.Lock()
	if r, ok := s.routes[k]; ok {
		host = r
	}
	s.mu.Unlock()
	if host != g.self() && g.node.Down(host) {
		nh, gone := g.repl.adopt(s.id, sub)
		switch {
		case nh == "" && gone != "":
			g.metrics.cluster.WithLabelValues(kindHeld, heldGone).Inc()
			s.refuseForward(f, gone)
			return true, false
		case nh == "" || nh == host:
			return false, false // the store silent: later
		}
		s.mu.Lock()
		if s.routes[k] == host {
			s.routes[k] = nh
		}
		s.mu.Unlock()
		host = nh
	}
	if host == hf.host && hf.maybe {
		return false, false // until it is dead, or the bound
	}
	if host == g.self() {
		if g.wal {
			g.walMu.RLock()
			defer g.walMu.RUnlock()
		}
		g.calls.HandleFrame(s, f)
		g.metrics.cluster.WithLabelValues(kindHeld, heldDone).Inc()
		return true, false
	}
	switch err := s.forwardOnce(host, f); {
	case err == nil:
		g.metrics.cluster.WithLabelValues(kindHeld, heldDone).Inc()
		s.noteTaken(host, f)
		return true, false
	case errors.Is(err, errForwardRefused):
		s.refuseForward(f, "the call's node did not take it")
		return true, false
	default:
		return false, host == hf.host && mayHaveTaken(err)
	}
}

// mayHaveTaken says whether a forward that failed with err may have
// reached its host: anything but "no responders" (nobody serves the
// host's subject, cluster.ErrNoNode).
func mayHaveTaken(err error) bool { return !errors.Is(err, cluster.ErrNoNode) }
