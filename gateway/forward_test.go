package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	dto "github.com/prometheus/client_model/go"
)

// TestClusterForwardTakenWhileHostWaits: alice on n1 calls bob on n2
// (n1 hosts the call), and n1's dispatch of frames waits for the store
// longer than clusterTimeout, as behind a writer's cut held up by the
// sessions bucket electing a leader (walMu held alone). Bob's re-offer,
// forwarded to n1 meanwhile, is taken: bob gets no 480, alice gets it
// once when n1 goes on, and her answer reaches bob. Before, n1 answered
// the forward only after dispatching it: n2's request timed out and bob
// got 480 "the call's node is unreachable" for a re-offer alice then got
// (TestClusterPartition, docs/cluster.md "Known defects").
func TestClusterForwardTakenWhileHostWaits(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b, bsub := aliceCallsBob(t, urls[0], urls[1])
	forwards := func(outcome string) float64 {
		var m dto.Metric
		if err := gs[1].metrics.cluster.WithLabelValues(kindInbound, outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	ok, failed := forwards("ok"), forwards("failed")
	gs[0].walMu.Lock()
	held := true
	defer func() {
		if held {
			gs[0].walMu.Unlock()
		}
	}()
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "bob@example.com", Target: "alice@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	})
	// n2's forward ends, taken or timed out (clusterTimeout), while n1
	// still waits.
	for deadline := time.Now().Add(2 * clusterTimeout); forwards("ok") == ok && forwards("failed") == failed; <-time.After(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n2's forward not over after %s", 2*clusterTimeout)
		}
	}
	gs[0].walMu.Unlock()
	held = false
	reofferAnswered(t, b, a, bsub)
	// Alice got the re-offer once: the next frame she reads is bob's
	// hang-up.
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: "bob@example.com", Target: "alice@example.com"},
	})
	expect(t, a.read(), protocol.TypeMessage, protocol.ActionShutdown)
}

// TestClusterForwardQueueFull: while n1's dispatch waits, it takes
// forwarded frames up to its bound (one in dispatch, inboundQueue
// queued) and refuses the next, which its sender answers 480: a frame
// is never dropped in silence.
func TestClusterForwardQueueFull(t *testing.T) {
	gs, _ := newClusterGateways(t, 1)
	g := gs[0]
	g.walMu.Lock()
	defer g.walMu.Unlock()
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: "m1", SessionID: "s1", Sequence: 1},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200, Initiator: "bob@example.com", Target: "alice@example.com"},
	}
	req, _ := json.Marshal(inboundReq{Session: "s1", Identity: "bob@example.com", Owner: "n2", Frame: f.Marshal()})
	if got := string(g.onInbound(req)); got != inboundTaken {
		t.Fatalf("first frame answered %q", got)
	}
	// The loop has the first frame once the queue is empty again.
	for deadline := time.Now().Add(5 * time.Second); len(g.forwarded) > 0; <-time.After(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first frame is still queued after 5s")
		}
	}
	for i := range inboundQueue {
		if got := string(g.onInbound(req)); got != inboundTaken {
			t.Fatalf("frame %d answered %q", i+2, got)
		}
	}
	if got := string(g.onInbound(req)); got == inboundTaken {
		t.Fatal("a frame past the bound was taken")
	}
	if got := string(g.onInbound([]byte("{"))); got == inboundTaken {
		t.Fatal("an undecodable request was taken")
	}
}
