package gateway

import (
	"testing"
	"time"

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
