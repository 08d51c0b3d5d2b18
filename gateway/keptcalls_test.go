package gateway

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// aliceTrickles has alice (a) send a candidate on the call's subsession.
func aliceTrickles(a *peer, cand string) {
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionTrickle, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{Candidates: cand}),
	})
}

// wantCandidate reads p's next frame within d: the candidate cand.
func wantCandidate(t *testing.T, p *peer, cand string, d time.Duration) {
	t.Helper()
	f := p.readWithin(d)
	var pl protocol.CallPayload
	if f.Header.Action != protocol.ActionTrickle || protocol.DecodePayload(f.Payload, &pl) != nil || pl.Candidates != cand {
		t.Fatalf("read %s, want the candidate %q", f.Marshal(), cand)
	}
}

// keptTicket returns the ticket of the first call frame to session id
// that g keeps.
func keptTicket(g *Gateway, id string) ticketOf {
	g.kept.mu.Lock()
	defer g.kept.mu.Unlock()
	for _, d := range g.kept.m[id] {
		if d.tk.n != 0 {
			return d.tk
		}
	}
	return ticketOf{}
}

// TestCallFrameOfADeadNodeDeliveredAgain: in a call between alice on n1
// (its host) and bob on n2, alice's candidate is relayed by n1 to bob's
// session on n2, which takes it and, its store gone (it is dying), never
// writes it; n2 dies. n1, which kept the frame until n2 said it was
// written, sends it again: bob, resumed on n3, gets it, and the call goes
// on (alice's hang-up reaches him). Before, the frame was lost with n2,
// acknowledged to alice.
func TestCallFrameOfADeadNodeDeliveredAgain(t *testing.T) {
	gs, urls, dying := secondNodeDying(t)
	a, b, _ := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	dying.killed.Store(true)
	const cand = "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host"
	aliceTrickles(a, cand)
	waitFor(t, "n1 to keep the candidate", func() bool { return keptFor(gs[0], b.sid) == 1 })
	gs[1].node.Close()
	b.c.CloseNow()
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	wantCandidate(t, w, cand, gs[0].holdFor()+10*time.Second)
	aliceHangsUp(a)
	expect(t, w.read(), protocol.TypeMessage, protocol.ActionShutdown)
	// At least once: a loaded machine may see a node's lease lapse and
	// send again what was kept for it, taken once all the same (bob
	// read the hang-up right after the candidate).
	if n := counterValue(gs[0].metrics.cluster.WithLabelValues(kindKept, keptResent)); n < 1 {
		t.Fatalf("%v frames sent again, want alice's candidate", n)
	}
}

// TestCallRequestOfADeadNodeDeliveredAgain: in a call between alice on
// n1 (its host) and bob on n2, alice's re-offer is relayed by n1 to bob's
// session on n2, which takes it and, its store gone (it is dying), never
// writes it; n2 dies. n1, which kept the request until n2 said it was
// written, sends it again: bob, resumed on n3, gets it under the
// correlation id it got there, and his answer is alice's. Before, the
// request was lost with n2, acknowledged to alice: she never had an
// answer, and every later re-offer of the call was refused as glare.
func TestCallRequestOfADeadNodeDeliveredAgain(t *testing.T) {
	gs, urls, dying := secondNodeDying(t)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	dying.killed.Store(true)
	aliceReoffers(a)
	waitFor(t, "n1 to keep the re-offer", func() bool { return keptFor(gs[0], b.sid) == 1 })
	gs[1].node.Close()
	b.c.CloseNow()
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	bobAnswersTheReoffer(t, w, a, bsub, gs[0].holdFor()+10*time.Second)
	// The call is free for the next: no glare.
	aliceReoffers(a)
	bobAnswersTheReoffer(t, w, a, bsub, 5*time.Second)
}

// TestCallRequestPastAStaleOwner: in a call between alice on n1 (its
// host) and bob on n2, bob moves to n3; alice's call still names n2 as
// his node, while n1 keeps a frame it sent again to bob on n3, not yet
// written there (as when bob resumes on n3 before n1 sends again what
// the dead n2 took). Alice's re-offer reaches bob at once. Before, n2
// taken for bob's node had n3's kept frame sent again ahead of the
// re-offer, in a queue whose head waited for the call's lock that the
// re-offer's relay held: alice got 480 after 3 s, and bob nothing (in
// TestCallRequestOfADeadNodeDeliveredAgain once in twenty runs).
func TestCallRequestPastAStaleOwner(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	noStaleResends(gs...)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	b.c.CloseNow()
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	sent := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: bsub, CorrelationID: "s99"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	}
	o := endpoint.Origin{Session: a.sid, Sequence: 99, Stream: "c1"}
	gs[0].keepDelivered(b.sid, "n3", sent, true, o, 99, ticketOf{life: gs[2].life, n: gs[2].tickets.current() + 1000})
	if keptFor(gs[0], b.sid) != 1 {
		t.Fatal("n1 keeps no frame for bob on n3")
	}
	aliceReoffers(a)
	// Within deliverResumeWait, which the re-offer waited before.
	bobAnswersTheReoffer(t, w, a, bsub, deliverResumeWait/2)
	if n := counterValue(gs[0].metrics.cluster.WithLabelValues(kindKept, keptAnswered)); n != 0 {
		t.Fatalf("%v kept requests found answered: n3's frame was sent again", n)
	}
}

// TestCallRequestKeptFollowsItsSession: alice's re-offer, relayed by n1
// to bob on n2, is kept until n2 says it is written; bob reads it and
// moves to n3 before answering. Alice's next frame for him sends the
// re-offer to n3 first, from her frame's relay, which holds her call's
// lock: taken there already, it reaches bob once, and his answer under
// the correlation id he read is alice's. Asked for under that lock, the
// call of the request sent again would have waited for it forever.
func TestCallRequestKeptFollowsItsSession(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	noStaleResends(gs...)
	a, b, _ := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	aliceReoffers(a)
	ro := b.read()
	expect(t, ro, protocol.TypeRequest, protocol.ActionStart)
	waitFor(t, "n1 to keep the re-offer", func() bool { return keptFor(gs[0], b.sid) == 1 })
	b.c.CloseNow()
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, ro.Control.Sequence)
	const cand = "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host"
	aliceTrickles(a, cand)
	wantCandidate(t, w, cand, 10*time.Second)
	answer(w, ro)
	if r := a.read(); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 || r.Control.SubsessionID != "c1" {
		t.Fatalf("alice's re-offer answered %s", r.Marshal())
	}
}

// TestCallFramesKeptUntilWritten: n1 keeps the call frames it relays to
// bob on n2 until a reply of n2 says they are written; a frame n2 wrote
// is forgotten with n2's next reply, and its death then sends nothing
// again.
func TestCallFramesKeptUntilWritten(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	noStaleResends(gs...)
	a, b, _ := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	aliceTrickles(a, "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host")
	wantCandidate(t, b, "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host", 5*time.Second)
	waitFor(t, "n1 to keep the candidate", func() bool { return keptFor(gs[0], b.sid) == 1 })
	first := keptTicket(gs[0], b.sid)
	if first.n == 0 || first.life != gs[1].life {
		t.Fatalf("kept with ticket %+v, want one of n2's life %s", first, gs[1].life)
	}
	// Bob read it: it is written, and n2's mark passes it once its
	// writer's round has noted so.
	waitFor(t, "n2's mark to pass the candidate", func() bool { return gs[1].tickets.current() >= first.n })
	aliceTrickles(a, "a=candidate:2 1 udp 1 192.0.2.2 1000 typ host")
	wantCandidate(t, b, "a=candidate:2 1 udp 1 192.0.2.2 1000 typ host", 5*time.Second)
	waitFor(t, "n1 to keep the second candidate only", func() bool {
		gs[0].sweepKept()
		tk := keptTicket(gs[0], b.sid)
		return keptFor(gs[0], b.sid) == 1 && tk.n > first.n
	})
	// The second is kept until a later reply: n2's death sends it again,
	// and bob's session, resumed on n3, takes it once.
	gs[1].node.Close()
	b.c.CloseNow()
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	aliceHangsUp(a)
	expect(t, w.readWithin(gs[0].holdFor()+10*time.Second), protocol.TypeMessage, protocol.ActionShutdown)
	if n := counterValue(gs[0].metrics.cluster.WithLabelValues(kindKept, keptResent)); n < 1 {
		t.Fatalf("%v frames sent again, want the second candidate", n)
	}
}

// TestCallFramesOfAnEarlierLife: a call frame kept for an owner is
// forgotten once the owner's mark of the same life passes it, and sent
// again when a reply comes from a new life of its owner (restarted
// within a lease, never seen dead). A request the call's host relays on
// the call's stream is kept; not one relayed off a stream (a new call's
// start), nor a frame an owner numbered nothing for.
func TestCallFramesOfAnEarlierLife(t *testing.T) {
	gs, _ := newClusterGateways(t, 1)
	g := gs[0]
	noStaleResends(g)
	o := endpoint.Origin{Session: "alice", Sequence: 2, Stream: "c1"}
	frame := func(typ protocol.Type) *protocol.Frame {
		return &protocol.Frame{Control: protocol.Control{Type: typ, Package: protocol.PackageCall, SubsessionID: "c1"},
			Header: protocol.Header{Action: protocol.ActionTrickle}}
	}
	g.keepDelivered("bob", "n2", frame(protocol.TypeMessage), false, o, 7, ticketOf{life: "L1", n: 5})
	g.keepDelivered("bob", "n2", frame(protocol.TypeRequest), true, o, 8, ticketOf{life: "L1", n: 6})
	g.keepDelivered("bob", "n2", frame(protocol.TypeRequest), true, endpoint.Origin{Session: "alice", Sequence: 3}, 9, ticketOf{life: "L1", n: 7})
	g.keepDelivered("bob", "n2", frame(protocol.TypeMessage), false, o, 10, ticketOf{life: "L1"})
	if n := keptFor(g, "bob"); n != 2 {
		t.Fatalf("%d frames kept, want the two numbered on the call's stream", n)
	}
	g.noteMark("n2", "L1", 5)
	g.sweepKept()
	if n := keptFor(g, "bob"); n != 1 {
		t.Fatalf("%d frames kept under a mark below the request's ticket, want 1", n)
	}
	g.noteMark("n2", "L1", 6)
	g.sweepKept()
	if n := keptFor(g, "bob"); n != 0 {
		t.Fatalf("%d frames kept under a mark that passed them", n)
	}
	g.keepDelivered("bob", "n2", frame(protocol.TypeMessage), false, o, 11, ticketOf{life: "L1", n: 9})
	g.noteMark("n2", "L2", 0)
	waitFor(t, "the frame of n2's earlier life sent again", func() bool {
		return counterValue(g.metrics.cluster.WithLabelValues(kindKept, keptResent)) == 1 && keptFor(g, "bob") == 0
	})
}

// TestStaleCallFramesNotSentAgain: a call frame its owner has not said
// written is not sent again for its age alone (resendStale is for
// messages): sent again, it is kept again under a new ticket that only
// the owner's next reply passes, and to an owner fallen quiet it went
// again every keptStale for as long as the session lived.
func TestStaleCallFramesNotSentAgain(t *testing.T) {
	gs, _ := newClusterGateways(t, 1)
	g := gs[0]
	g.keptStaleFor.Store(1) // every delivery is stale
	f := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header: protocol.Header{Action: protocol.ActionTrickle}}
	g.keepDelivered("bob", "n2", f, false, endpoint.Origin{Session: "alice", Sequence: 2, Stream: "c1"}, 7, ticketOf{life: "L1", n: 5})
	g.resendStale()
	if n := counterValue(g.metrics.cluster.WithLabelValues(kindKept, keptResent)); n != 0 || keptFor(g, "bob") != 1 || g.hasWaiting("bob") {
		t.Fatalf("a stale call frame: %v sent again, %d kept, want none sent and it kept", n, keptFor(g, "bob"))
	}
}

// TestCallRequestFoundAnsweredCountedOnce: a call's request kept for a
// node that restarted is asked of its call as its turn comes; a call
// that has its answer already (here: no such call any more) has nothing
// sent again, and the request counts as answered, not also as resent.
func TestCallRequestFoundAnsweredCountedOnce(t *testing.T) {
	gs, _ := newClusterGateways(t, 1)
	g := gs[0]
	noStaleResends(g)
	req := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1", CorrelationID: "s8"},
		Header: protocol.Header{Action: protocol.ActionStart}}
	g.keepDelivered("bob", "n2", req, true, endpoint.Origin{Session: "alice", Sequence: 2, Stream: "c1"}, 8, ticketOf{life: "L1", n: 6})
	if n := keptFor(g, "bob"); n != 1 {
		t.Fatalf("%d frames kept, want the request", n)
	}
	g.noteMark("n2", "L1", 5)
	g.noteMark("n2", "L2", 0) // n2 restarted: what it took unwritten goes again
	answered := g.metrics.cluster.WithLabelValues(kindKept, keptAnswered)
	waitFor(t, "the request found answered", func() bool { return counterValue(answered) == 1 && !g.hasWaiting("bob") })
	if n := counterValue(g.metrics.cluster.WithLabelValues(kindKept, keptResent)); n != 0 {
		t.Fatalf("a request found answered also counted %v times as resent", n)
	}
}
