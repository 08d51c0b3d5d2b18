package gateway

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Call frames a host took and has not confirmed (docs/cluster.md "A
// dead node"). A call frame forwarded to the call's host is answered
// "taken" at once (onInbound), and its client has it acknowledged with
// its sender's next state; the host dispatches it afterwards. A host
// dying in between, or before its writer wrote what the frame changed,
// lost the frame although its client held it delivered: a callee's
// answer so lost left the call ringing at its adopter until the ring
// timer ended it. So the sender's node keeps each call frame a host
// took until the host confirms it. The host notes the frames it
// dispatched and, once its writer's next round (whose cut follows their
// dispatch) is written, tells each sender's node their sequences
// (subject confirm: a notice nobody waits for, so no node's writer
// waits on another's). When the host dies first, the frames it has not
// confirmed go to the front of their session's hold (callhold.go), as
// frames it may have taken, and are handed to the call's adopter before
// the call's next frames. A frame the host did handle is then handled
// again, as a client's resend is: its relays are marked by their origin
// and taken once (relays.go), and an answer found answered is relayed
// again (call's answerAgain), so each peer has it once.

// kindConfirm is the subject's kind of a host's confirmations.
const kindConfirm = "confirm"

// maxTaken bounds the frames a session keeps for its calls' hosts to
// confirm; the oldest goes first (counted, logged): its host took it
// and lives, or its death would have sent it on.
const maxTaken = 64

// The outcomes of a frame kept for its host to confirm, in
// jsonrtc_cluster_requests_total (kind="taken").
const (
	kindTaken     = "taken"
	takenResent   = "resent"  // its host died: to the front of the hold
	takenExpired  = "expired" // unconfirmed past holdFor (a notice lost, an older host)
	takenOverflow = "full"    // pushed out by the maxTaken-th after it
)

// takenFrame is a call frame a host took.
type takenFrame struct {
	f    *protocol.Frame
	host string
	at   time.Time
}

// noteTaken keeps f, a call frame of s's client that host took, until
// host confirms it.
func (s *Session) noteTaken(host string, f *protocol.Frame) {
	g := s.g
	if g.repl == nil || f.EffectivePackage() != protocol.PackageCall || f.Control.Sequence == 0 {
		return
	}
	now := time.Now()
	bound := g.holdFor()
	h := &s.held
	h.mu.Lock()
	expired, full := 0, 0
	for len(h.taken) > 0 {
		old := now.Sub(h.taken[0].at) > bound
		if !old && len(h.taken) < maxTaken {
			break
		}
		if old {
			expired++
		} else {
			full++
		}
		h.taken[0] = takenFrame{}
		h.taken = h.taken[1:]
	}
	h.taken = append(h.taken, takenFrame{f: f, host: host, at: now})
	h.mu.Unlock()
	if g.countTrimmed(kindTaken, takenExpired, takenOverflow, expired, full) {
		s.rlog.Warn("call frames taken", "call frames their hosts took and did not confirm forgotten: too many", "host", host, "forgotten", full)
	}
}

// confirmTaken forgets the frames of sequences seqs that host took:
// their effects are written there.
func (s *Session) confirmTaken(host string, seqs []uint64) {
	h := &s.held
	h.mu.Lock()
	defer h.mu.Unlock()
	h.taken = slices.DeleteFunc(h.taken, func(t takenFrame) bool {
		return t.host == host && slices.Contains(seqs, t.f.Control.Sequence)
	})
}

// requeueTaken moves the frames host took and did not confirm to the
// front of s's hold, in order, as frames it may have taken: host is
// dead, and the hold hands them to its calls' adopters. It reports how
// many it moved.
func (s *Session) requeueTaken(host string) int {
	g := s.g
	h := &s.held
	h.mu.Lock()
	var moved []heldFrame
	until := time.Now().Add(g.holdFor())
	h.taken = slices.DeleteFunc(h.taken, func(t takenFrame) bool {
		if t.host != host {
			return false
		}
		moved = append(moved, heldFrame{f: t.f, host: host, until: until, maybe: true})
		return true
	})
	if len(moved) == 0 {
		h.mu.Unlock()
		return 0
	}
	// Not bounded by maxHeld: they were taken, and acknowledged.
	h.frames = append(moved, h.frames...)
	start := !h.running
	h.running = true
	h.mu.Unlock()
	g.metrics.cluster.WithLabelValues(kindTaken, takenResent).Add(float64(len(moved)))
	s.log.Info("call frames a dead host took and did not confirm sent to the calls' adopters", "host", host, "frames", len(moved))
	if start && !g.goTracked(s.handOver) {
		s.dropHeld("the gateway is shutting down")
	}
	return len(moved)
}

// requeueDeadTaken is requeueTaken of each host of s's taken frames that
// is dead; it reports how many frames it moved. A call's next frame
// goes behind them: the frames of a call reach its adopter in the order
// its client sent them.
func (s *Session) requeueDeadTaken() int {
	h := &s.held
	h.mu.Lock()
	var hosts []string
	for _, t := range h.taken {
		if !slices.Contains(hosts, t.host) {
			hosts = append(hosts, t.host)
		}
	}
	h.mu.Unlock()
	n := 0
	for _, host := range hosts {
		if s.g.node.Down(host) {
			n += s.requeueTaken(host)
		}
	}
	return n
}

// confirmations are the frames this node dispatched as host, forwarded
// by other nodes, not yet confirmed to them: per sender node, per
// session, their sequences.
type confirmations struct {
	mu sync.Mutex
	by confirmSet
	// tickets: the answers to messages dispatched here for other nodes
	// that number them (keptanswers.go).
	tickets []uint64
	// nudging: a timer will start a round if none takes them first.
	nudging bool
}

// confirmNudge is how long dispatched frames wait for a round before
// one is started for them. Most dispatches dirty a session here (a
// relay to its client), whose round takes them; a round started at
// once for each split the rounds under load (more store requests a
// call setup).
const confirmNudge = 5 * time.Millisecond

// confirmSet holds sequences per sender node, per session.
type confirmSet map[string]map[string][]uint64

// add notes seqs of the session id owned by owner.
func (cs *confirmSet) add(owner, id string, seqs ...uint64) {
	if *cs == nil {
		*cs = confirmSet{}
	}
	m := (*cs)[owner]
	if m == nil {
		m = map[string][]uint64{}
		(*cs)[owner] = m
	}
	m[id] = append(m[id], seqs...)
}

// confirmReq is a host's confirmation to a sender's node.
type confirmReq struct {
	Host     string              `json:"host"`
	Sessions map[string][]uint64 `json:"sessions"`
}

// confirmLater notes that the frame of sequence seq, forwarded by the
// session id owned by owner, was dispatched here: confirmed to owner
// once the writer's next round is written (writeRound), at once without
// a writer.
func (g *Gateway) confirmLater(owner, id string, seq uint64) {
	if seq == 0 || owner == "" || owner == g.self() {
		return
	}
	if !g.wal {
		g.sendConfirms(confirmSet{owner: {id: {seq}}})
		return
	}
	c := &g.confirms
	c.mu.Lock()
	c.by.add(owner, id, seq)
	g.nudgeLocked()
}

// ticketDispatched notes that the answer taken as ticket was dispatched
// here: written once the writer's next round is (keptanswers.go).
func (g *Gateway) ticketDispatched(ticket uint64) {
	if !g.wal {
		g.tickets.written([]uint64{ticket}, g.holdFor())
		return
	}
	c := &g.confirms
	c.mu.Lock()
	c.tickets = append(c.tickets, ticket)
	g.nudgeLocked()
}

// nudgeLocked starts a round within confirmNudge, unless one takes what
// is noted first; it unlocks g.confirms.mu.
func (g *Gateway) nudgeLocked() {
	c := &g.confirms
	nudge := !c.nudging
	c.nudging = true
	c.mu.Unlock()
	if nudge {
		// A round even when the frame dirtied no session here.
		time.AfterFunc(confirmNudge, func() {
			c.mu.Lock()
			waiting := len(c.by) > 0 || len(c.tickets) > 0
			c.nudging = false
			c.mu.Unlock()
			if waiting {
				poke(g.dirtyKick)
			}
		})
	}
}

// take returns the confirmations and tickets noted so far and forgets
// them.
func (c *confirmations) take() (confirmSet, []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	by, tickets := c.by, c.tickets
	c.by, c.tickets = nil, nil
	return by, tickets
}

// restore notes again the confirmations and tickets of a round whose
// writes failed: the next round's success sends them.
func (c *confirmations) restore(by confirmSet, tickets []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for owner, m := range by {
		for id, seqs := range m {
			c.by.add(owner, id, seqs...)
		}
	}
	c.tickets = append(c.tickets, tickets...)
}

// sendConfirms tells each sender's node which of its sessions' frames
// were dispatched here, their effects written.
func (g *Gateway) sendConfirms(by confirmSet) {
	for owner, m := range by {
		data, _ := json.Marshal(confirmReq{Host: g.self(), Sessions: m})
		if err := g.node.Notify(owner, kindConfirm, data); err != nil {
			g.metrics.cluster.WithLabelValues(kindConfirm, "failed").Inc()
		}
	}
}

// onConfirm hears a host's confirmation of frames this node's sessions
// forwarded to it.
func (g *Gateway) onConfirm(data []byte) []byte {
	var req confirmReq
	if json.Unmarshal(data, &req) != nil || req.Host == "" {
		return nil
	}
	for id, seqs := range req.Sessions {
		if s := g.sessionOrMoved(id); s != nil {
			s.confirmTaken(req.Host, seqs)
		}
	}
	return nil
}
