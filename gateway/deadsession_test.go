package gateway

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestClusterFrameForASessionOfADeadNode: n1 hosts alice's call with bob
// (on n2) and dies with alice's session; n2 adopts the call, and bob
// re-offers before alice has resumed anywhere. The re-offer reaches her
// on n3 once she resumes. Before, n2 found nobody serving her session
// (its record names dead n1) and the re-offer, acknowledged to bob, was
// lost (docs/cluster.md "A dead node": "a frame sent while the session
// has not resumed yet is lost").
func TestClusterFrameForASessionOfADeadNode(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	callHost(t, gs[1], a.sid, "c1", "n1")
	gs[0].save(gs[0].lookup(a.sid))
	gs[0].node.Close()
	a.c.CloseNow()
	waitFor(t, "n2 to see n1 down", func() bool { return gs[1].node.Down("n1") })
	callHost(t, gs[1], b.sid, bsub, "n2")
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "bob@example.com", Target: "alice@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	})
	waitFor(t, "n2 to take alice's session for the re-offer", func() bool { return gs[1].lookup(a.sid) != nil })
	w := resumeWS(t, urls[2], "alice@example.com", a.sid, a.seq+1, a.last)
	reofferAnsweredWithin(t, b, w, bsub, 10*time.Second)
	aliceHangsUp(w)
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
}

// TestWaitingForANodeBounded: the frames waiting for a session's node
// are bounded (maxWaitingFrames a session: the next fails, as it would
// have without the wait, and is counted), and a request for a session
// with frames waiting fails at once: it would overtake them.
func TestWaitingForANodeBounded(t *testing.T) {
	g, _ := aliceOnNode(t, nil)
	msg := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}
	for i := range maxWaitingFrames {
		queued, first, _, err := g.enqueue("gone", msg, true, endpoint.Origin{}, i == 0)
		if !queued || first != (i == 0) || err != nil {
			t.Fatalf("frame %d: queued %v, first %v, %v", i, queued, first, err)
		}
	}
	if queued, _, err := g.waitBehind("gone", msg, true, endpoint.Origin{}); !queued || !errors.Is(err, errWaitingFull) {
		t.Fatalf("past the bound: queued %v, %v; want errWaitingFull", queued, err)
	}
	req := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header: protocol.Header{Action: protocol.ActionStart}}
	if _, _, err := g.sendVia("gone", "n9", req, true, endpoint.Origin{}); !errors.Is(err, errWaitingBefore) {
		t.Fatalf("a request behind waiting frames: %v, want errWaitingBefore", err)
	}
	g.dropWaiting("gone", "test")
	if g.hasWaiting("gone") || g.awaitingNode.n != 0 {
		t.Fatalf("after the drop: waiting %v, %d frames", g.hasWaiting("gone"), g.awaitingNode.n)
	}
}

// TestFrameWaitsForTheAdoptionUnderWay: bob's re-offer reaches n2 while
// n2's adoption of the call has claimed its record and not yet rebuilt
// the call. The frame waits for the adoption; before, it found the
// record naming n2 and went to a call handler without the call, which
// took it for a new call and rang alice on a new subsession (the
// intermittent failure of TestClusterFrameForASessionOfADeadNode). When
// the adoption held is the one bob's own hold made (for a frame of his
// n1 took and did not confirm), the re-offer waits behind it there.
func TestFrameWaitsForTheAdoptionUnderWay(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	callHost(t, gs[1], a.sid, "c1", "n1")
	claimed, released := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(released) })
	t.Cleanup(release) // a failure does not leave the adoption held
	var once sync.Once
	gs[1].repl.afterClaim = func(string) {
		once.Do(func() {
			close(claimed)
			<-released
		})
	}
	gs[0].save(gs[0].lookup(a.sid))
	gs[0].node.Close()
	a.c.CloseNow()
	select {
	case <-claimed:
	case <-time.After(15 * time.Second):
		t.Fatal("n2 did not adopt the call")
	}
	bobSendsReoffer(b, bsub)
	// It waits for the adoption (the fix), or, when the adoption held is
	// the one bob's hold made for an earlier frame of his (one n1 took and
	// did not confirm, requeued as n1 went down), behind it in the hold.
	waitFor(t, "bob's re-offer to wait for the adoption", func() bool {
		return gs[1].repl.waitedAdoption.Load() > 0 || heldFrameOf(gs[1].lookup(b.sid), bsub, protocol.ActionStart)
	})
	release()
	w := resumeWS(t, urls[2], "alice@example.com", a.sid, a.seq+1, a.last)
	reofferAnsweredWithin(t, b, w, bsub, 10*time.Second)
	aliceHangsUp(w)
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
}

// heldFrameOf reports whether s holds, behind the first of its held
// frames, a request of action on subsession sub (callhold.go).
func heldFrameOf(s *Session, sub string, action protocol.Action) bool {
	if s == nil {
		return false
	}
	s.held.mu.Lock()
	defer s.held.mu.Unlock()
	for i, hf := range s.held.frames {
		if i > 0 && hf.f.Control.Type == protocol.TypeRequest && hf.f.Control.SubsessionID == sub && hf.f.Header.Action == action {
			return true
		}
	}
	return false
}
