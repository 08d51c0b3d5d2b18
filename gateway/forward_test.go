package gateway

import (
	"encoding/json"
	"sync"
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
	gs, a, b, bsub, goOn := callHostWaiting(t)
	forwardOver(t, gs[1], func() {
		b.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: bsub},
			Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "bob@example.com", Target: "alice@example.com"},
			Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
		})
	})
	goOn()
	reofferAnswered(t, b, a, bsub)
	// Alice got the re-offer once: the next frame she reads is bob's
	// hang-up.
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: "bob@example.com", Target: "alice@example.com"},
	})
	expect(t, a.read(), protocol.TypeMessage, protocol.ActionShutdown)
}

// callHostWaiting has alice on n1 call bob on n2 (n1 hosts the call),
// then holds n1's dispatch of frames as a writer's cut held up by the
// store does (walMu alone) until goOn.
func callHostWaiting(t *testing.T) (gs []*Gateway, a, b *peer, bsub string, goOn func()) {
	t.Helper()
	gs, urls := newClusterGateways(t, 2)
	a, b, bsub = aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	gs[0].walMu.Lock()
	goOn = sync.OnceFunc(gs[0].walMu.Unlock)
	t.Cleanup(goOn)
	return gs, a, b, bsub, goOn
}

// forwardOver runs send, which has g's session forward a frame, and waits
// until the forward is over, taken or timed out (clusterTimeout).
func forwardOver(t *testing.T, g *Gateway, send func()) {
	t.Helper()
	forwards := func(outcome string) float64 {
		var m dto.Metric
		if err := g.metrics.cluster.WithLabelValues(kindInbound, outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	ok, failed := forwards("ok"), forwards("failed")
	send()
	for deadline := time.Now().Add(2 * clusterTimeout); forwards("ok") == ok && forwards("failed") == failed; <-time.After(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the forward not over after %s", 2*clusterTimeout)
		}
	}
}

// TestClusterEndAfterForwardedFrames: alice on n1 sends bob on n2 a
// message (n1 hosts it); bob's 200, forwarded to n1 while n1's dispatch
// waits, and then the end of his session, heard there: the end does not
// overtake the 200, and alice gets bob's 200, not an error for a
// recipient gone.
func TestClusterEndAfterForwardedFrames(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: protocol.EncodePayload(protocol.MessagePayload{Body: "hi"}),
	})
	m := b.read()
	expect(t, m, protocol.TypeRequest, protocol.ActionSend)
	gs[0].walMu.Lock()
	goOn := sync.OnceFunc(gs[0].walMu.Unlock)
	t.Cleanup(goOn)
	forwardOver(t, gs[1], func() {
		b.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.Control.CorrelationID},
			Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200},
		})
	})
	req, _ := json.Marshal(sessionReq{Session: b.sid, Owner: "n2"})
	gs[0].onEnded(req)
	goOn()
	rep := a.read()
	expect(t, rep, protocol.TypeResponse, protocol.ActionSend)
	if rep.Header.ResponseCode != 200 {
		t.Fatalf("alice's message answered %s, want bob's 200", rep.Marshal())
	}
}

// TestClusterForwardQueueFull: while n1's dispatch waits, it takes
// forwarded frames up to its bound (inboundQueue, the one in dispatch
// included) and refuses the next, which its sender answers 480: a frame
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
	for i := range inboundQueue - 1 {
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
