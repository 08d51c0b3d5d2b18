package gateway

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// answersKeptFor returns the answers g keeps for host to write.
func answersKeptFor(g *Gateway, host string) int {
	g.answers.mu.Lock()
	defer g.answers.mu.Unlock()
	if h := g.answers.by[host]; h != nil {
		return len(h.list)
	}
	return 0
}

// TestAnswerOfADeadHostReported: alice on n1 sends bob on n2 a message;
// bob's answer reaches n1, the message's host, which takes it and, its
// store gone (it is dying), never writes alice's report; n1 dies. n2,
// which kept the answer until n1 wrote it, reports it to alice's
// session, resumed on n3: she gets bob's 200. Before, the report died
// with n1, and alice got 408 "the message's node went down" (the chaos
// test's most common failure under node kills).
func TestAnswerOfADeadHostReported(t *testing.T) {
	gs, urls, dying := newClusterDying(t, 3, 1)
	a, b := aliceAndBob(t, urls)
	aliceMessagesBob(a, "2")
	m := b.read()
	if m.Header.Action != protocol.ActionSend {
		t.Fatalf("bob read %s", m.Marshal())
	}
	gs[0].save(gs[0].lookup(a.sid)) // her send, owed a report, in her record
	dying.killed.Store(true)
	bobAnswers(b, m)
	waitFor(t, "n2 to keep bob's answer", func() bool { return answersKeptFor(gs[1], "n1") == 1 })
	gs[0].node.Close()
	a.c.CloseNow()
	a2 := resumeAlice(t, urls[2], a.sid)
	wantReport200(t, a2, "2")
	if n := answersKeptFor(gs[1], "n1"); n != 0 {
		t.Fatalf("%d answers kept for n1 after it died", n)
	}
	if n := counterValue(gs[1].metrics.cluster.WithLabelValues(kindKeptAnswer, answerResent)); n != 1 {
		t.Fatalf("%v answers sent on, want bob's", n)
	}
}

// TestAnswersForgottenOnceWritten: answers a live host took are
// forgotten as its mark, carried by its next replies, passes them; none
// is sent on.
func TestAnswersForgottenOnceWritten(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	issued := func() uint64 {
		tk := &gs[0].tickets
		tk.mu.Lock()
		defer tk.mu.Unlock()
		return tk.next
	}
	for _, seq := range []string{"2", "3", "4"} {
		aliceMessagesBob(a, seq)
		bobAnswers(b, b.read())
		wantReport200(t, a, seq)
		// The host notes the round written a moment after alice has
		// the report; on a loaded machine the next answer's reply came
		// first, with a mark one behind (a CI run kept 2).
		waitFor(t, "n1 to note the answer written", func() bool { return gs[0].tickets.current() >= issued() })
	}
	// The last answer's reply carried a mark from before it was written:
	// at most it is kept.
	if n := answersKeptFor(gs[1], "n1"); n > 1 {
		t.Fatalf("%d answers kept for n1, want at most the last", n)
	}
	if n := counterValue(gs[1].metrics.cluster.WithLabelValues(kindKeptAnswer, answerResent)); n != 0 {
		t.Fatalf("%v answers sent on, want none", n)
	}
}

// TestAnswerTickets: a host's mark is the ticket before its oldest
// unwritten one, and tickets open past their bound do not hold it.
func TestAnswerTickets(t *testing.T) {
	var tk answerTickets
	t1, t2, t3 := tk.issue(), tk.issue(), tk.issue()
	tk.written([]uint64{t1, t3}, time.Hour)
	if m := tk.current(); m != t1 {
		t.Fatalf("mark %d with ticket %d open, want %d", m, t2, t1)
	}
	tk.written(nil, 0)
	if m := tk.current(); m != t3 {
		t.Fatalf("mark %d after the open ticket expired, want %d", m, t3)
	}
	if life, ticket, mark, ok := parseTicket("ok L 7 5"); !ok || life != "L" || ticket != 7 || mark != 5 {
		t.Fatalf("parseTicket: %q %d %d %v", life, ticket, mark, ok)
	}
	if _, _, _, ok := parseTicket(inboundTaken); ok {
		t.Fatal("a plain answer read as a ticket")
	}
}

// TestAnswersOfARestartedHostSentOn: a reply of a new life of a host
// sends on what its earlier life took and did not write (it ended
// without being seen down), and answers kept past holdFor are
// forgotten.
func TestAnswersOfARestartedHostSentOn(t *testing.T) {
	gs, _ := newClusterGateways(t, 2)
	g := gs[1]
	g.keepAnswer("n1", "L1", 5, 4, reportReq{Session: "nobody", Corr: "c1"})
	g.keepAnswer("n1", "L1", 6, 4, reportReq{Session: "nobody", Corr: "c2"})
	if n := answersKeptFor(g, "n1"); n != 2 {
		t.Fatalf("%d answers kept, want 2", n)
	}
	g.keepAnswer("n1", "L1", 7, 5, reportReq{Session: "nobody", Corr: "c3"})
	if n := answersKeptFor(g, "n1"); n != 2 {
		t.Fatalf("%d answers kept after mark 5, want 2", n)
	}
	g.keepAnswer("n1", "L2", 1, 0, reportReq{Session: "nobody", Corr: "c4"})
	if n := counterValue(g.metrics.cluster.WithLabelValues(kindKeptAnswer, answerResent)); n != 2 {
		t.Fatalf("%v answers sent on at the new life, want 2", n)
	}
	g.answers.mu.Lock()
	g.answers.by["n1"].list[0].at = time.Now().Add(-2 * g.holdFor())
	g.answers.mu.Unlock()
	g.keepAnswer("n1", "L2", 2, 0, reportReq{Session: "nobody", Corr: "c5"})
	if n := counterValue(g.metrics.cluster.WithLabelValues(kindKeptAnswer, answerExpired)); n != 1 {
		t.Fatalf("%v answers expired, want 1", n)
	}
}
