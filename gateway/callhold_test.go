package gateway

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestClusterCallFramesHeldWhileHostDies: alice on n1 calls bob on n2
// (the call's host is n1) and resumes on n3 (the call stays on n1). n1
// dies, and bob re-offers at once, before n2 has read n1's lease gone:
// the re-offer waits on n2 until the call is adopted, then reaches alice,
// once, and her answer reaches bob; then her hang-up reaches bob. Before,
// bob's re-offer got 480 ("the call's node is unreachable").
func TestClusterCallFramesHeldWhileHostDies(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	a.c.CloseNow()
	w := resumeWS(t, urls[2], "alice@example.com", a.sid, a.seq+1, a.last)
	callHost(t, gs[1], a.sid, "c1", "n1")
	gs[0].node.Close()
	if !gs[1].node.Alive("n1") {
		t.Log("n2 saw n1 go before bob's re-offer: the hold is not exercised")
	}
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "bob@example.com", Target: "alice@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	})
	// Within the hold's bound (n1's lease read gone, the adoption).
	reofferAnsweredWithin(t, b, w, bsub, gs[1].holdFor()+5*time.Second)
	aliceHangsUp(w)
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
}

// TestCallHoldBounds: a session's hold takes maxHeld frames; the next
// request of a held call is refused 503. A request held past its bound
// is answered 480, and one whose try timed out at a live host is not
// sent there again (it may have been taken).
func TestCallHoldBounds(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	b := connectedOn(t, urls[0], "bob@example.com")
	s := gs[0].lookup(b.sid)
	reoffer := func(sub string, seq uint64) *protocol.Frame {
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: sub, Sequence: seq},
			Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "bob@example.com", Target: "alice@example.com"},
			Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
		}
	}
	s.held.mu.Lock()
	s.held.running = true // nothing hands them over
	for i := range maxHeld {
		s.held.frames = append(s.held.frames, heldFrame{f: reoffer("x", uint64(100+i)), host: "n2", until: time.Now().Add(time.Hour)})
	}
	s.held.mu.Unlock()
	s.forward("n2", reoffer("x", 200))
	r := b.read()
	if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeServiceUnavailable || r.Control.CorrelationID != "c200" {
		t.Fatalf("a request past a full hold answered %s, want 503", r.Marshal())
	}
	s.held.mu.Lock()
	s.held.frames = []heldFrame{{f: reoffer("y", 300), host: "n2", until: time.Now().Add(-time.Second), maybe: true}}
	s.held.mu.Unlock()
	if !gs[0].goTracked(s.handOver) {
		t.Fatal("gateway closed")
	}
	r = b.read()
	if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeTemporarilyUnavail || r.Control.CorrelationID != "c300" {
		t.Fatalf("a request held past its bound answered %s, want 480", r.Marshal())
	}
	waitFor(t, "the hold to empty", func() bool {
		s.held.mu.Lock()
		defer s.held.mu.Unlock()
		return len(s.held.frames) == 0 && !s.held.running
	})
}
