package call

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Replicated calls: a call between web sessions, ringing or answered, is
// what its snapshot says, so that another node (or this one, restarted)
// goes on with it when the node hosting it dies (docs/cluster.md, "A
// dead node"). A re-offer or a transfer outstanding at that moment is in
// it (their answers, and a transfer's progress, are relayed to the side
// that made them); a declared request and a ringing fork's buffered
// candidates are not: a declared request's answer finds nothing to go
// to.

// Snapshot is a relayed call as another node rebuilds it.
type Snapshot struct {
	// Target is the callee as the caller named it.
	Target string      `json:"target"`
	Caller LegSnapshot `json:"caller"`
	// Callee is the leg that answered; empty while the call rings.
	Callee LegSnapshot `json:"callee"`
	// Ringing are the callee legs still ringing, one per forked session,
	// before the answer; RingUntil is when the call ends unanswered (the
	// ring timer, wall clock: it goes on on another node).
	Ringing   []LegSnapshot `json:"ringing,omitempty"`
	RingUntil time.Time     `json:"ring_until,omitzero"`
	// Answer is what Callee's answer brought the caller, for an adopter
	// to relay again (Restore).
	Answer *AnswerSnapshot `json:"answer,omitempty"`
}

// AnswerSnapshot is a callee's answer to the call's offer: its sequence
// (the relay's origin) and what the caller's 200 carries of it.
type AnswerSnapshot struct {
	Seq     uint64          `json:"seq"`
	Ext     []protocol.Ext  `json:"ext,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// Trickle are the candidates the callee sent while its fork rang,
	// relayed to the caller after the answer (at most
	// maxBufferedTrickle).
	Trickle []json.RawMessage `json:"trickle,omitempty"`
}

// answerSnapshot is the AnswerSnapshot of a callee's answer f, with the
// candidates trickle it buffered while it rang.
func answerSnapshot(f *protocol.Frame, trickle []json.RawMessage) *AnswerSnapshot {
	return &AnswerSnapshot{Seq: f.Control.Sequence, Ext: f.Header.Ext, Payload: f.Payload, Trickle: slices.Clone(trickle)}
}

func (a *AnswerSnapshot) equal(o *AnswerSnapshot) bool {
	if a == nil || o == nil {
		return a == o
	}
	return a.Seq == o.Seq && slices.Equal(a.Ext, o.Ext) && bytes.Equal(a.Payload, o.Payload) &&
		slices.EqualFunc(a.Trickle, o.Trickle, func(x, y json.RawMessage) bool { return bytes.Equal(x, y) })
}

// Answered reports whether sn is of an answered call (else it rings).
func (sn Snapshot) Answered() bool { return len(sn.Ringing) == 0 }

// Callees are the callee legs sn restores: the one that answered, or
// those ringing.
func (sn Snapshot) Callees() []LegSnapshot {
	if sn.Answered() {
		return []LegSnapshot{sn.Callee}
	}
	return sn.Ringing
}

func (sn Snapshot) equal(o Snapshot) bool {
	return sn.Target == o.Target && sn.Caller == o.Caller && sn.Callee == o.Callee &&
		sn.RingUntil.Equal(o.RingUntil) && slices.Equal(sn.Ringing, o.Ringing) && sn.Answer.equal(o.Answer)
}

// LegSnapshot is one side of a relayed call.
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
	// ReofferHere and ReofferThere are a re-offer this side made that
	// the other side has not answered: its correlation on this side, and
	// on the other side, which the answer comes with. Strings, not a
	// pointer, so that snapshots compare with ==.
	ReofferHere  string `json:"reoffer_here,omitempty"`
	ReofferThere string `json:"reoffer_there,omitempty"`
	// TransferHere and TransferThere are a transfer this side asked for
	// whose final status has not come, as a re-offer's.
	TransferHere  string `json:"transfer_here,omitempty"`
	TransferThere string `json:"transfer_there,omitempty"`
}

// ErrLegTaken is Restore's answer when a leg of the snapshot is in a call
// here already.
var ErrLegTaken = errors.New("call: a leg of the restored call is in a call here")

// ErrRestoreLegs: Restore's endpoints are not one per callee leg.
var ErrRestoreLegs = errors.New("call: Restore wants one endpoint per callee leg of the snapshot")

// Restore rebuilds a relayed call from its snapshot, its legs' sessions
// being caller and callees (sn.Callees, in order). An answered call goes
// on as if it had been answered here: its frames are relayed, and
// Options.Replicate hears of its changes and its end. A ringing call
// rings on: a callee's answer, decline or hang-up and the caller's
// cancel are relayed, and its ring timer ends it at sn.RingUntil.
func (h *Handler) Restore(sn Snapshot, caller Endpoint, callees ...Endpoint) error {
	lss := sn.Callees()
	if len(callees) != len(lss) {
		return ErrRestoreLegs
	}
	state := legAnswered
	if !sn.Answered() {
		state = legRinging
	}
	c := &Call{target: sn.Target, far: relay{h}, ringUntil: sn.RingUntil}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.caller = restoredLeg(c, caller, sn.Caller)
	for i, ep := range callees {
		c.callees = append(c.callees, restoredLeg(c, ep, lss[i]))
	}
	if sn.Answered() {
		c.winner, c.answer = c.callees[0], sn.Answer
	}
	c.replicated = &sn
	legs := append([]*leg{c.caller}, c.callees...)
	for _, l := range legs {
		l.state = state
	}
	// The call counts here now, against the limits of its legs' sessions
	// here (over the limit, it goes on uncounted: it was admitted).
	for _, l := range legs {
		l.held = recountCall(l.ep)
	}
	h.mu.Lock()
	for _, l := range legs {
		if h.legs[legKey{l.ep.ID(), l.sub}] != nil {
			h.mu.Unlock()
			for _, l := range legs {
				if l.held {
					releaseCall(l.ep)
				}
			}
			return ErrLegTaken
		}
	}
	for _, l := range legs {
		h.legs[legKey{l.ep.ID(), l.sub}] = l
	}
	h.calls[c] = struct{}{}
	h.mu.Unlock()
	for _, ls := range lss {
		h.keepSub(ls.Sub)
	}
	if !sn.Answered() {
		// Past its time (the adoption came late), it ends at once.
		c.timer = time.AfterFunc(max(time.Until(sn.RingUntil), 0), func() { relay{h}.ringTimeout(c) })
		return nil
	}
	if a := sn.Answer; a != nil {
		// The host may have died between writing the answered record
		// (Options.WriteAhead) and the caller's session having the 200:
		// relayed again under the answer's origin, which a caller who
		// had it takes nothing of (endpoint.Relayer), it reaches one
		// who did not, ringing on an answered call until she cancelled.
		// So are the candidates the callee sent while it rang, relayed
		// after the answer under the same origin, as the host did.
		defer c.relaying(endpoint.Origin{Session: sn.Callee.Session, Sequence: a.Seq, Stream: sn.Callee.Sub})()
		h.send(c.caller, relay{h}.answerFrame(c, &protocol.Frame{Header: protocol.Header{Ext: a.Ext}, Payload: a.Payload}), false)
		for _, t := range a.Trickle {
			tr := h.frameTo(c.caller, protocol.TypeMessage, protocol.ActionTrickle, "")
			tr.Payload = t
			h.send(c.caller, tr, false)
		}
	}
	return nil
}

// keepSub makes sure the handler never hands out sub, a callee leg's id
// of a restored call: a node restarted hands out its ids from 1 again.
func (h *Handler) keepSub(sub string) {
	if !strings.HasPrefix(sub, h.opts.SubsessionPrefix) {
		return
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(sub, h.opts.SubsessionPrefix), 10, 64)
	if err != nil {
		return
	}
	for cur := h.next.Load(); cur < n && !h.next.CompareAndSwap(cur, n); cur = h.next.Load() {
	}
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
	l := &leg{call: c, ep: ep, sub: ls.Sub, state: legAnswered, startCorr: ls.StartCorr, answerCorr: ls.AnswerCorr}
	if ls.ReofferHere != "" && ls.ReofferThere != "" {
		l.reoffer = &pending{here: ls.ReofferHere, there: ls.ReofferThere}
	}
	if ls.TransferHere != "" && ls.TransferThere != "" {
		l.transfer = &pending{here: ls.TransferHere, there: ls.TransferThere}
	}
	return l
}

// snapshotLocked returns c's snapshot; c.mu is held.
func snapshotLocked(c *Call) Snapshot {
	sn := Snapshot{Target: c.target, Caller: legSnapshot(c.caller)}
	if c.winner != nil {
		sn.Callee, sn.Answer = legSnapshot(c.winner), c.answer
		return sn
	}
	for _, l := range c.callees {
		if l.state == legRinging {
			sn.Ringing = append(sn.Ringing, legSnapshot(l))
		}
	}
	sn.RingUntil = c.ringUntil
	return sn
}

func legSnapshot(l *leg) LegSnapshot {
	ls := LegSnapshot{Session: l.ep.ID(), Identity: l.ep.Identity(), Oracle: l.ep.Oracle(), Sub: l.sub,
		StartCorr: l.startCorr, AnswerCorr: l.answerCorr}
	if l.reoffer != nil {
		ls.ReofferHere, ls.ReofferThere = l.reoffer.here, l.reoffer.there
	}
	if l.transfer != nil {
		ls.TransferHere, ls.TransferThere = l.transfer.here, l.transfer.there
	}
	return ls
}

// replicateLocked tells Options.Replicate of a relayed call's new state,
// ringing or answered, or of its end; c.mu is held.
func (h *Handler) replicateLocked(c *Call) {
	if h.opts.Replicate == nil {
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
	if c.winner == nil && len(sn.Ringing) == 0 {
		return // no fork rings: the call is ending (settle)
	}
	if c.replicated != nil && c.replicated.equal(sn) {
		return
	}
	c.replicated = &sn
	h.opts.Replicate(sn, false)
}

// writeAhead stores what f, from leg l, is about to make of a call
// between web sessions before the other side hears of it
// (Options.WriteAhead): a ringing callee's answer, or a hang-up of the
// call by its caller or its answered callee. Relayed first, the answer
// reached the caller while the record still held the call ringing, and
// the node adopting it after this one's death rang on with a caller who
// talked (its ring timer then failed the call under both); a hang-up
// reached the other side while the record held the call, adopted then
// as alive by the node a leg that had not written the hang-up resumed
// on. It runs before f's dispatch, without the call's lock: an adoption
// elsewhere found by the write drops the call here (Drop), which takes
// it.
func (h *Handler) writeAhead(l *leg, f *protocol.Frame) {
	if h.opts.WriteAhead == nil {
		return
	}
	switch {
	case f.Header.Action == protocol.ActionShutdown:
		h.endAhead(l)
	case f.Control.Type == protocol.TypeResponse && f.Header.Action == protocol.ActionStart &&
		(f.Control.MessageState == protocol.StateFinal || f.Header.ResponseCode >= 200):
		h.answerAhead(l, f)
	}
}

// answerAhead is writeAhead of a callee's answer f.
func (h *Handler) answerAhead(l *leg, f *protocol.Frame) {
	var p protocol.CallPayload
	if protocol.DecodePayload(f.Payload, &p) != nil || !protocol.HasSDP(p.SDP) {
		return // refused by the relay: no answer
	}
	c := l.call
	c.mu.Lock()
	if _, ok := c.far.(relay); !ok || c.ended || c.winner != nil || l == c.caller || l.state != legRinging {
		c.mu.Unlock()
		return
	}
	sn := snapshotLocked(c)
	sn.Callee = legSnapshot(l)
	sn.Callee.AnswerCorr = f.Control.CorrelationID
	sn.Ringing, sn.RingUntil = nil, time.Time{}
	sn.Answer = answerSnapshot(f, l.trickle)
	c.mu.Unlock()
	if h.opts.WriteAhead(sn, false) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended && c.winner == nil {
		// The answer's change, once relayed, is the one stored: not
		// written again (replicateLocked).
		c.replicated = &sn
	}
}

// endAhead is writeAhead of l's hang-up, which ends the call when l is
// its caller or the callee that answered. The end's own write
// (replicateLocked) follows as before: a change written between the two
// is deleted by it.
func (h *Handler) endAhead(l *leg) {
	c := l.call
	c.mu.Lock()
	_, ok := c.far.(relay)
	if !ok || c.ended || c.replicated == nil || l != c.caller && l != c.winner {
		c.mu.Unlock()
		return
	}
	sn := *c.replicated
	c.mu.Unlock()
	_ = h.opts.WriteAhead(sn, true)
}
