package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// noStaleResends keeps gs from sending unanswered deliveries again on
// their own (resendStale), for tests that count what is kept and sent.
func noStaleResends(gs ...*Gateway) {
	for _, g := range gs {
		g.keptStaleFor.Store(-1)
	}
}

// keptFor returns the deliveries to session id that g keeps until
// answered.
func keptFor(g *Gateway, id string) int {
	g.kept.mu.Lock()
	defer g.kept.mu.Unlock()
	return len(g.kept.m[id])
}

// aliceMessagesBob has alice send bob a message, sequence seq.
func aliceMessagesBob(a *peer, seq string) {
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":` + seq + `,"correlation_id":"c` + seq + `"},"header":{"action":"send","initiator":"alice@example.com","target":"bob@example.com"},"payload":{"body":"hi"}}`)
}

// bobAnswers answers m, a message bob read, with 200.
func bobAnswers(b *peer, m *protocol.Frame) {
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200},
	})
}

// wantReport200 reads alice's report of her message seq: bob's 200.
func wantReport200(t *testing.T, a *peer, seq string) {
	t.Helper()
	r := a.readWithin(10 * time.Second)
	if r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c"+seq || r.Header.ResponseCode != 200 {
		t.Fatalf("alice read %s, want bob's 200 for c%s", r.Marshal(), seq)
	}
}

// secondNodeDying starts three gateways that send nothing again on
// their own (noStaleResends), the second on a store the test can kill.
func secondNodeDying(t *testing.T) ([]*Gateway, []string, *killedStore) {
	var made atomic.Int32
	var dying *killedStore
	gs, urls := newClusterGatewaysOn(t, 3, func(st store.Store) store.Store {
		if made.Add(1) != 2 {
			return st
		}
		dying = &killedStore{Store: st}
		return dying
	})
	noStaleResends(gs...)
	return gs, urls, dying
}

// TestMessageOfADeadNodeDeliveredAgain: alice on n1 sends bob on n2 a
// message, which n2 takes and, its store gone (it is dying), never
// writes; n2 dies. n1, which kept the delivery until bob answers, sends
// it again: bob, resumed on n3, gets it, and his answer is alice's
// report. Before, the message was lost with n2 and alice's report timed
// out (408).
func TestMessageOfADeadNodeDeliveredAgain(t *testing.T) {
	gs, urls, dying := secondNodeDying(t)
	a, b := aliceAndBob(t, urls)
	dying.killed.Store(true)
	aliceMessagesBob(a, "2")
	waitFor(t, "n1 to keep the message", func() bool { return keptFor(gs[0], b.sid) == 1 })
	gs[1].node.Close()
	b.c.CloseNow()
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	m := readAlicesMessage(t, w, gs[0].holdFor()+10*time.Second)
	bobAnswers(w, m)
	wantReport200(t, a, "2")
	gs[0].sweepKept()
	if n := keptFor(gs[0], b.sid); n != 0 {
		t.Fatalf("%d messages kept after bob answered", n)
	}
}

// TestReportOfADeadOwnerSentAgain: alice sends bob a message on n1 and
// resumes on n2; n2 takes the report n1 sends her there (bob answered on
// n3) and, its store gone (it is dying), never writes it; n2 dies. n1,
// which kept the report until n2 wrote it, sends it again: alice, resumed
// on n3, gets bob's 200. Before, the report was lost with n2: her record
// still awaited it from n1, alive, and she got 408 only at the report
// timeout (the chaos test with node kills, a 408 for a message received).
func TestReportOfADeadOwnerSentAgain(t *testing.T) {
	gs, urls, dying := secondNodeDying(t)
	b := dial(t, urls[2], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	waitFor(t, "bob in n1's directory", func() bool { return len(gs[0].node.Remote("bob@example.com")) == 1 })
	aliceMessagesBob(a, "2")
	m := readAlicesMessage(t, b, 5*time.Second)
	a.c.CloseNow()
	a2 := resumeWS(t, urls[1], "alice@example.com", a.sid, a.seq+1, a.last)
	dying.killed.Store(true)
	bobAnswers(b, m)
	waitFor(t, "n1 to keep its report to alice on n2", func() bool { return keptFor(gs[0], a.sid) == 1 })
	gs[1].node.Close()
	a2.c.CloseNow()
	a3 := resumeWS(t, urls[2], "alice@example.com", a.sid, a2.seq+1, a2.last)
	r := a3.readWithin(gs[0].holdFor() + 10*time.Second)
	if r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c2" || r.Header.ResponseCode != 200 {
		t.Fatalf("alice read %s, want bob's 200 for c2", r.Marshal())
	}
	if n := keptFor(gs[0], a.sid); n > 1 {
		t.Fatalf("%d reports kept for alice, want the one sent again at most", n)
	}
}

// TestMessagesKeptUntilAnswered: n1 keeps the messages it delivered to
// bob on n2 until bob answers them; then they are forgotten, and n2's
// death sends nothing again. Messages bob moved away from answered are
// sent to his new node: taken there once already (n2 wrote them before
// letting him go), they reach him once.
func TestMessagesKeptUntilAnswered(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	noStaleResends(gs...)
	a, b := aliceAndBob(t, urls)
	var ms []*protocol.Frame
	for seq := 2; seq <= 3; seq++ {
		aliceMessagesBob(a, strconv.Itoa(seq))
		ms = append(ms, b.read())
	}
	// n1 keeps a message once n2's answer to its relay is back, which
	// may come after bob read it.
	waitFor(t, "n1 to keep both messages", func() bool { return keptFor(gs[0], b.sid) == 2 })
	bobAnswers(b, ms[0])
	wantReport200(t, a, "2")
	gs[0].sweepKept()
	if n := keptFor(gs[0], b.sid); n != 1 {
		t.Fatalf("%d messages kept after bob answered one, want 1", n)
	}
	// Bob moves to n3 with the second unanswered: alice's next message
	// sends it first, to n3, which took it with bob's record.
	b.c.CloseNow()
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, ms[1].Control.Sequence)
	aliceMessagesBob(a, "4")
	m := w.read()
	if m.Header.Action != protocol.ActionSend || m.Control.Sequence <= ms[1].Control.Sequence {
		t.Fatalf("bob read %s, want alice's third message, not her second again", m.Marshal())
	}
	if n := counterValue(gs[0].metrics.cluster.WithLabelValues(kindKept, keptResent)); n != 1 {
		t.Fatalf("%v messages sent again, want alice's second", n)
	}
	bobAnswers(w, ms[1])
	bobAnswers(w, m)
	wantReport200(t, a, "3")
	wantReport200(t, a, "4")
	gs[0].sweepKept()
	if n := keptFor(gs[0], b.sid); n != 0 {
		t.Fatalf("%d messages kept after bob answered all", n)
	}
	if n := gs[0].resend(b.sid, func(*keptDelivery) bool { return true }); n != 0 {
		t.Fatalf("%d messages sent again after they were answered", n)
	}
}

// TestKeptBounds: a session's deliveries are kept up to maxKept, the
// oldest forgotten first, and none past holdFor or once answered; only
// a client's messages to another node are kept.
func TestKeptBounds(t *testing.T) {
	gs, _ := newClusterGateways(t, 1)
	g := gs[0]
	noStaleResends(g)
	answered := map[string]bool{}
	g.kept.holds = func(id, corr string) bool { return !answered[corr] }
	msg := func(seq uint64) *protocol.Frame {
		return &protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging, Sequence: seq, CorrelationID: "s" + strconv.FormatUint(seq, 10)},
			Header: protocol.Header{Action: protocol.ActionSend}}
	}
	o := endpoint.Origin{Session: "alice", Sequence: 2}
	for i := range maxKept + 3 {
		g.keepDelivered("bob", "n2", msg(uint64(i+1)), true, o, uint64(i+1), ticketOf{})
	}
	g.keepDelivered("bob", "n2", msg(500), true, endpoint.Origin{}, 500, ticketOf{}) // from the SIP side
	g.keepDelivered("bob", "n2", &protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage}}, true, o, 501, ticketOf{})
	g.keepDelivered("bob", g.self(), msg(502), true, o, 502, ticketOf{}) // here
	if n := keptFor(g, "bob"); n != maxKept {
		t.Fatalf("%d kept, want %d", n, maxKept)
	}
	g.kept.mu.Lock()
	first := g.kept.m["bob"][0].seq
	g.kept.m["bob"][0].at = time.Now().Add(-g.holdFor() - time.Second)
	g.kept.mu.Unlock()
	if first != 4 {
		t.Fatalf("the oldest kept is %d, want 4", first)
	}
	answered["s6"], answered["s7"] = true, true
	g.sweepKept()
	g.kept.mu.Lock()
	var seqs []uint64
	for _, d := range g.kept.m["bob"] {
		seqs = append(seqs, d.seq)
	}
	total := g.kept.n
	g.kept.mu.Unlock()
	if len(seqs) != maxKept-3 || seqs[0] != 5 || seqs[1] != 8 || total != len(seqs) {
		t.Fatalf("kept %v (%d counted), want 5, 8 ... (4 expired, 6 and 7 answered)", seqs, total)
	}
	// None is pending in the messaging handler: none is sent again, and
	// all are forgotten.
	if n := g.resend("bob", func(*keptDelivery) bool { return true }); n != 0 || keptFor(g, "bob") != 0 || g.kept.n != 0 {
		t.Fatalf("resend of deliveries no handler holds: %d sent, %d left", n, keptFor(g, "bob"))
	}
}

// TestMessageWaitsForAResume: alice on n1 sends bob a message as his
// node, n2, dies: it waits on n1 for bob's client, and reaches him once
// he has resumed on n3, with a second message after it, in order; his
// answers are alice's reports. Before, each was refused at once (480:
// the chaos test's most common failure under node kills).
func TestMessageWaitsForAResume(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(fmt.Sprintf("down=%v", known), func(t *testing.T) { messageWaitsForAResume(t, known) })
	}
}

// messageWaitsForAResume is TestMessageWaitsForAResume, the message sent
// once n1 knows n2 is down (known) or at once.
func messageWaitsForAResume(t *testing.T, known bool) {
	gs, urls := newClusterGateways(t, 3)
	a, b := aliceAndBob(t, urls)
	waitFor(t, "bob in n1's directory", func() bool { return len(gs[0].node.Remote("bob@example.com")) == 1 })
	gs[1].node.Close()
	b.c.CloseNow()
	if known {
		waitFor(t, "n2 down", func() bool { return gs[0].node.Down("n2") })
	}
	aliceMessagesBob(a, "2")
	waitFor(t, "alice's message to wait for bob", func() bool { return gs[0].hasWaiting(b.sid) })
	aliceMessagesBob(a, "3")
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	var ms []*protocol.Frame
	for range 2 {
		m := w.readWithin(gs[0].holdFor() + 10*time.Second)
		if m.Control.Type != protocol.TypeRequest || m.Header.Action != protocol.ActionSend {
			t.Fatalf("bob read %s, want alice's message", m.Marshal())
		}
		ms = append(ms, m)
	}
	if ms[0].Control.Sequence >= ms[1].Control.Sequence {
		t.Fatalf("bob's messages out of order: %d, %d", ms[0].Control.Sequence, ms[1].Control.Sequence)
	}
	bobAnswers(w, ms[1])
	bobAnswers(w, ms[0])
	got := map[string]bool{}
	for range 2 {
		r := a.readWithin(10 * time.Second)
		if r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
			t.Fatalf("alice read %s, want bob's 200", r.Marshal())
		}
		got[r.Control.CorrelationID] = true
	}
	if !got["c2"] || !got["c3"] {
		t.Fatalf("alice's reports %v, want c2 and c3", got)
	}
}

// TestMessageToASlowNodeWaits: alice's message to bob reaches his node
// after her node's request timed out (the node slow, or killed with the
// request in flight): it waits and is sent again, and bob, whose node
// took the first, gets it once; his answer is her report. Before, she
// got 480 at once, for a message bob received (most of the chaos test's
// 480s under node kills).
func TestMessageToASlowNodeWaits(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	var slowed atomic.Bool
	slow := func() {
		if slowed.CompareAndSwap(false, true) {
			time.Sleep(clusterTimeout + 500*time.Millisecond)
		}
	}
	gs[1].beforeDeliver.Store(&slow)
	aliceMessagesBob(a, "2")
	m := b.readWithin(3 * clusterTimeout)
	if m.Header.Action != protocol.ActionSend || m.Header.Initiator != "alice@example.com" {
		t.Fatalf("bob read %s, want alice's message", m.Marshal())
	}
	bobAnswers(b, m)
	wantReport200(t, a, "2")
	// Once: bob's next frame is alice's next message.
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":3,"correlation_id":"c3"},"header":{"action":"send","initiator":"alice@example.com","target":"bob@example.com"},"payload":{"body":"next"}}`)
	if m := b.readWithin(3 * clusterTimeout); !strings.Contains(string(m.Payload), "next") {
		t.Fatalf("bob read %s, want alice's next message (her first once)", m.Marshal())
	}
}

// TestMayWaitAfter: which failed deliveries wait for their session.
func TestMayWaitAfter(t *testing.T) {
	msg := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging}, Header: protocol.Header{Action: protocol.ActionSend}}
	o := endpoint.Origin{Session: "a", Sequence: 2}
	resp := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall}}
	call := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall}, Header: protocol.Header{Action: protocol.ActionStart}}
	timeout := fmt.Errorf("deliver: %w", context.DeadlineExceeded)
	for _, c := range []struct {
		name string
		err  error
		f    *protocol.Frame
		o    endpoint.Origin
		want bool
	}{
		{"message, nobody there", errNobodyThere, msg, o, true},
		{"message, not owned there", errMoved, msg, o, true},
		{"message, resuming there", errOwnerResuming, msg, o, true},
		{"message, timed out", timeout, msg, o, true},
		{"response, timed out (no mark: it would be sent twice)", timeout, resp, endpoint.Origin{}, false},
		{"response, not owned there", errMoved, resp, endpoint.Origin{}, true},
		{"call request, nobody there", errNobodyThere, call, o, false},
		{"response, record not read", fmt.Errorf("%w: no leader", errRecordUnread), resp, endpoint.Origin{}, true},
		{"call request, record not read", errRecordUnread, call, o, false},
		{"message, refused", errors.New("full"), msg, o, false},
	} {
		if got := mayWaitAfter(c.err, c.f, true, c.o); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestStaleDeliverySentAgain: a message bob's node took and bob has not
// answered for keptStale is sent again on its own (its node may have
// restarted within a lease without writing it, and nothing else would
// send it); taken there already, it reaches bob once, and his answer is
// alice's report.
func TestStaleDeliverySentAgain(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	aliceMessagesBob(a, "2")
	m := b.read()
	waitFor(t, "n1 to send the message again", func() bool {
		return counterValue(gs[0].metrics.cluster.WithLabelValues(kindKept, keptResent)) >= 1
	})
	// Once: bob's next frame is alice's next message.
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":3,"correlation_id":"c3"},"header":{"action":"send","initiator":"alice@example.com","target":"bob@example.com"},"payload":{"body":"next"}}`)
	if m2 := b.read(); !strings.Contains(string(m2.Payload), "next") {
		t.Fatalf("bob read %s, want alice's next message (her first once)", m2.Marshal())
	}
	bobAnswers(b, m)
	wantReport200(t, a, "2")
}

// TestMessageToAStraySession: the directory names alice's node n1 for
// bob's session, which lives on n2 (a publication of n1's from before it
// let bob go, landed late): alice's message reaches bob all the same,
// and n1's view names n2 again. Before, every message to bob from n1
// got 480 until n2 rewrote its entry.
func TestMessageToAStraySession(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := gs[0].node.Publish(ctx, cluster.Entry{Session: b.sid, Identity: "bob@example.com", Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1's view to name n1 for bob", func() bool { return len(gs[0].node.Named("bob@example.com")) == 1 })
	aliceMessagesBob(a, "2")
	readAlicesMessage(t, b, 5*time.Second)
	if e, ok := gs[0].node.Owner(b.sid); !ok || e.Node != "n2" {
		t.Fatalf("n1's view names %+v for bob, want n2", e)
	}
}
