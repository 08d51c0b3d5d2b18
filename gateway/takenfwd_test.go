package gateway

import (
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// isAnswer: f is a callee's final answer to a call's offer.
func isAnswer(f *protocol.Frame) bool {
	return f.Control.Type == protocol.TypeResponse && f.Header.Action == protocol.ActionStart && f.Control.MessageState == protocol.StateFinal
}

// holdAnswers has g hold each answer forwarded to it before its
// dispatch: taken is closed at the first, and each waits for release,
// then is dispatched when release says so (false: dropped, as by a node
// dying).
func holdAnswers(t *testing.T, g *Gateway) (taken chan struct{}, release func(dispatch bool)) {
	taken = make(chan struct{})
	gate := make(chan bool, 1)
	var once, done sync.Once
	h := func(f *protocol.Frame) bool {
		if !isAnswer(f) {
			return true
		}
		once.Do(func() { close(taken) })
		d := <-gate
		gate <- d
		return d
	}
	g.beforeInbound.Store(&h)
	release = func(dispatch bool) { done.Do(func() { gate <- dispatch }) }
	t.Cleanup(func() { release(false) }) // before the gateways close
	return taken, release
}

// takenOf returns the frames s keeps for its calls' hosts to confirm.
func takenOf(s *Session) int {
	s.held.mu.Lock()
	defer s.held.mu.Unlock()
	return len(s.held.taken)
}

// TestTakenAnswerOfADeadHostReachesItsAdopter: alice on n1 calls bob on
// n2; n1, the call's host, takes bob's answer and dies before handling
// it. n2 kept the answer (n1 had not confirmed it) and, once n1 is
// known dead, hands it to the call's adopter: alice, resumed on n3, gets
// the 200, and the call goes on to its hang-up. Before, the answer was
// lost with n1: the call rang on at its adopter until the ring timer
// ended it, bob's client holding it answered.
func TestTakenAnswerOfADeadHostReachesItsAdopter(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	taken, _ := holdAnswers(t, gs[0])
	a, b, bsub := bobAnswersAcross(t, gs, urls, taken, "n1 did not take bob's answer")
	bs := gs[1].lookup(b.sid)
	waitFor(t, "n2 to keep bob's answer for n1 to confirm", func() bool { return takenOf(bs) == 1 })
	gs[0].node.Close() // n1 dies, bob's answer not handled
	a.c.CloseNow()
	w := resumeWS(t, urls[2], "alice@example.com", a.sid, a.seq+1, a.last)
	r := w.readWithin(gs[1].holdFor() + 10*time.Second)
	if r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 || r.Control.SubsessionID != "c1" {
		t.Fatalf("alice's start answered %s, want bob's 200", r.Marshal())
	}
	waitFor(t, "bob's answer confirmed by the adopter", func() bool { return takenOf(bs) == 0 })
	aliceHangsUp(w)
	if s := b.read(); s.Control.Type != protocol.TypeMessage || s.Header.Action != protocol.ActionShutdown || s.Control.SubsessionID != bsub {
		t.Fatalf("bob got %s, want alice's hang-up", s.Marshal())
	}
}

// TestTakenFramesConfirmed: a call frame a live host took is kept by
// the sender's node until the host has dispatched it and written its
// effects, then forgotten; a host dying later sends nothing again.
func TestTakenFramesConfirmed(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	taken, release := holdAnswers(t, gs[0])
	a, b, _ := bobAnswersAcross(t, gs, urls, taken, "n1 did not take bob's answer")
	bs := gs[1].lookup(b.sid)
	waitFor(t, "n2 to keep bob's answer", func() bool { return takenOf(bs) == 1 })
	release(true)
	if r := a.read(); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
		t.Fatalf("alice's start answered %s", r.Marshal())
	}
	waitFor(t, "n1 to confirm bob's answer", func() bool { return takenOf(bs) == 0 })
	if n := bs.requeueTaken("n1"); n != 0 {
		t.Fatalf("%d frames sent again after their host confirmed them", n)
	}
}

// TestTakenBounds: a session keeps maxTaken frames for hosts to confirm,
// forgetting the oldest first, and none past holdFor; a confirmation
// forgets only its host's frames of its sequences.
func TestTakenBounds(t *testing.T) {
	gs, urls := newClusterGateways(t, 1)
	b := connectedOn(t, urls[0], "bob@example.com")
	s := gs[0].lookup(b.sid)
	frame := func(seq uint64) *protocol.Frame {
		return &protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x", Sequence: seq},
			Header: protocol.Header{Action: protocol.ActionTrickle}}
	}
	for i := range maxTaken + 3 {
		s.noteTaken("n2", frame(uint64(i+1)))
	}
	s.noteTaken("n3", &protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageMessaging, Sequence: 500}})
	if n := takenOf(s); n != maxTaken {
		t.Fatalf("%d kept, want %d", n, maxTaken)
	}
	s.held.mu.Lock()
	first := s.held.taken[0].f.Control.Sequence
	s.held.taken[0].at = time.Now().Add(-gs[0].holdFor() - time.Second)
	s.held.mu.Unlock()
	if first != 4 {
		t.Fatalf("the oldest kept is %d, want 4", first)
	}
	s.noteTaken("n3", frame(100))
	s.confirmTaken("n3", []uint64{5, 100})
	s.confirmTaken("n2", []uint64{6, 7})
	s.held.mu.Lock()
	var seqs []uint64
	for _, tf := range s.held.taken {
		seqs = append(seqs, tf.f.Control.Sequence)
	}
	s.held.mu.Unlock()
	if len(seqs) != maxTaken-3 || seqs[0] != 5 || seqs[1] != 8 {
		t.Fatalf("kept %v, want 5, 8 ... (4 expired, 6 and 7 confirmed by n2, 100 by n3)", seqs)
	}
}
