package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestReportOfADeadHost: alice's message awaits bob's answer on n1, the
// node that took her send (its host); alice resumes on n2, and n1 goes
// down before bob answers. Bob's answer, with nowhere to go, is reported
// to alice's session by bob's node: she gets his 200. Before, she got
// 408 "the message's node went down" at once, for a message delivered
// (the chaos test with node kills: 458 of 200,000 sends).
func TestReportOfADeadHost(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a2, m := aliceResumedAwayFromHerMessage(t, gs, urls)
	b := m.peer
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.f.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 202, Reason: "Seen"},
	})
	r := a2.readWithin(10 * time.Second)
	if r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c2" || r.Header.ResponseCode != 202 || r.Header.Reason != "Seen" {
		t.Fatalf("alice read %s, want bob's 202 report of c2", r.Marshal())
	}
	// It was owed once: nothing more comes, not the 408 of the grace.
	s := gs[1].lookup(a2.sid)
	s.mu.Lock()
	_, owed := s.awaiting["c2"]
	s.mu.Unlock()
	if owed {
		t.Fatal("c2 still owed a report after bob's")
	}
}

// TestReportOfASlowHostNotTwice: as TestReportOfADeadHost, then the
// host, taken for down while it was only slow, gives its own report of
// the same send: alice, who had bob's from his node, gets no second one.
// Before, she got both (the chaos test with node kills, which counts
// reports given twice: a host's 200 thirteen seconds after the
// receiver's node's).
func TestReportOfASlowHostNotTwice(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a2, m := aliceResumedAwayFromHerMessage(t, gs, urls)
	m.peer.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.f.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200},
	})
	if r := a2.readWithin(10 * time.Second); r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c2" {
		t.Fatalf("alice read %s, want bob's report of c2", r.Marshal())
	}
	s := gs[1].lookup(a2.sid)
	s.Send(s.reportFrame("c2", "", "bob@example.com", protocol.TypeResponse, 200, ""), false)
	s.Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionTrickle}}, false)
	if r := a2.readWithin(10 * time.Second); r.Header.Action != protocol.ActionTrickle {
		t.Fatalf("alice read %s after her report, want no second report", r.Marshal())
	}
}

// TestReportOfADeadHostUnanswered: as TestReportOfADeadHost, but bob
// never answers: alice gets 408 "the message's node went down" once the
// grace for bob's node to report has passed, not before.
func TestReportOfADeadHostUnanswered(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a2, _ := aliceResumedAwayFromHerMessage(t, gs, urls)
	start := time.Now()
	r := a2.readWithin(gs[1].lostReportGrace() + 10*time.Second)
	if r.Control.Type != protocol.TypeError || r.Control.CorrelationID != "c2" || r.Header.ErrorCode != protocol.CodeRequestTimeout ||
		r.Header.Reason != "no delivery report: the message's node went down" {
		t.Fatalf("alice read %s, want the 408 report of c2", r.Marshal())
	}
	if waited := time.Since(start); waited < gs[1].lostReportGrace()-2*time.Second {
		t.Fatalf("408 after %v, before the grace (%v)", waited, gs[1].lostReportGrace())
	}
}

// TestReportOfARestartedHost: an answer to a message reaches its host,
// alive, but restarted since it took the send (within a lease: never
// seen down), its messaging handler empty: the host reports the answer
// to the sender's session itself. Before, it was dropped, and the
// sender's report timed out (408) 92 s after its send.
func TestReportOfARestartedHost(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	s := gs[1].lookup(b.sid) // bob's session, on n2
	as := gs[0].lookup(a.sid)
	as.setAwaiting([]awaited{{Corr: "c9", Sub: "m9", Target: "bob@example.com", Node: "n1", Life: "earlier", By: time.Now().Add(time.Hour)}})
	as.takeAwaiting()
	answer := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageMessaging, CorrelationID: "s7", Sequence: 3},
		Header: protocol.Header{Action: protocol.ActionSend, ErrorCode: 486}}
	gs[0].dispatchInbound(inboundReq{Session: s.id, Identity: "bob@example.com", Owner: "n2", ReportTo: a.sid, ReportCorr: "c9"}, answer)
	r := a.read()
	if r.Control.Type != protocol.TypeError || r.Control.CorrelationID != "c9" || r.Control.SubsessionID != "m9" || r.Header.ErrorCode != 486 {
		t.Fatalf("alice read %s, want bob's 486 report of c9", r.Marshal())
	}
}

// TestReportOfARestartedHostHere: as TestReportOfARestartedHost, but
// the receiver's session is on the restarted host too (both sessions
// restored there from the store): its answer, which its handler no
// longer holds, is reported to the sender's session. Before, the
// handler dropped it, and the sender got 408 "the message's node went
// down" (the chaos test's most common failure under node kills).
func TestReportOfARestartedHostHere(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	b := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	as, bs := gs[0].lookup(a.sid), gs[0].lookup(b.sid)
	as.setAwaiting([]awaited{{Corr: "c9", Sub: "m9", Target: "bob@example.com", Node: "n1", Life: "earlier", By: time.Now().Add(time.Hour)}})
	as.takeAwaiting()
	bs.mu.Lock()
	bs.routes = map[routeKey]string{{protocol.PackageMessaging, "s7"}: "n1"}
	bs.reportTo = map[string]reportRoute{"s7": {to: a.sid, corr: "c9"}}
	bs.mu.Unlock()
	b.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: "s7"},
		Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 200}})
	r := a.read()
	if r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c9" || r.Control.SubsessionID != "m9" || r.Header.ResponseCode != 200 {
		t.Fatalf("alice read %s, want bob's 200 report of c9", r.Marshal())
	}
}

// bobsMessage is a message bob's client read.
type bobsMessage struct {
	peer *peer
	f    *protocol.Frame
}

// aliceResumedAwayFromHerMessage: alice on n1 sends bob on n2 a message,
// which he reads and does not answer; alice resumes on n2 (her record
// has her send: acknowledged only once written), and n1 goes down. It
// returns alice's new socket and bob's message.
func aliceResumedAwayFromHerMessage(t *testing.T, gs []*Gateway, urls []string) (*peer, bobsMessage) {
	t.Helper()
	a, b := aliceAndBob(t, urls)
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":2,"correlation_id":"c2"},"header":{"action":"send","initiator":"alice@example.com","target":"bob@example.com"},"payload":{"body":"hi"}}`)
	f := b.read()
	if f.Header.Action != protocol.ActionSend {
		t.Fatalf("bob read %s", f.Marshal())
	}
	gs[0].save(gs[0].lookup(a.sid))
	a.c.CloseNow()
	a2 := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":3,"csuw":2},"payload":{}}`)
	if r := a2.read(); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
		t.Fatalf("resume answered %s", r.Marshal())
	}
	a2.sid = a.sid
	// n1 goes (its lease given up), with the message's handler.
	gs[0].node.Close()
	waitFor(t, "n2 to see n1 down", func() bool { return gs[1].node.Down("n1") })
	return a2, bobsMessage{peer: b, f: f}
}

// TestReportOwedFromRecord: the sends owed a report that a session's
// record brings are answered by the node that takes the session: those
// whose host was this node in an earlier life (a restart on the data
// directory: its messages died with it) once the grace for a report
// from their receivers' nodes has passed, the others by their time.
func TestReportOwedFromRecord(t *testing.T) {
	g, a := aliceOnNode(t, nil)
	s := g.lookup(a.sid)
	s.setAwaiting([]awaited{
		{Corr: "c7", Target: "bob@example.com", Node: g.self(), Life: "earlier", By: time.Now().Add(time.Hour)},
		{Corr: "c8", Target: "bob@example.com", Node: g.self(), Life: g.life, By: time.Now().Add(time.Hour)},
		{Corr: "c9", Target: "bob@example.com", Node: g.self(), Life: g.life, By: time.Now().Add(-time.Second)},
	})
	s.takeAwaiting()
	r := a.read()
	if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeRequestTimeout || r.Control.CorrelationID != "c9" ||
		r.Header.Reason != "no delivery report" {
		t.Fatalf("alice read %s, want the 408 report of c9, past its time", r.Marshal())
	}
	s.mu.Lock()
	c7, c8 := s.awaiting["c7"], s.awaiting["c8"]
	s.mu.Unlock()
	if !c7.Lost || c7.By.After(time.Now().Add(g.lostReportGrace())) {
		t.Fatalf("c7 (an earlier life's) owed by %v, lost %v: want within the grace", c7.By, c7.Lost)
	}
	if c8.Lost || c8.Corr != "c8" {
		t.Fatal("c8, within its time and its host alive, was taken for lost")
	}
}

// TestClusterKnownOnADeadNode: a message to a user whose only session
// is on a node that went down waits for the session's client to resume
// elsewhere, and, when it does not within the hold, is 480 (offline a
// moment), not 404 (unknown), on a node that never served the user
// (the chaos test: hundreds of 404 under node kills).
func TestClusterKnownOnADeadNode(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	waitFor(t, "bob in n1's directory", func() bool { return len(gs[0].node.Remote("bob@example.com")) == 1 })
	gs[1].node.Close()
	waitFor(t, "n2 down", func() bool { return gs[0].node.Down("n2") })
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":2,"correlation_id":"c2"},"header":{"action":"send","initiator":"alice@example.com","target":"bob@example.com"},"payload":{"body":"hi"}}`)
	if r := a.readWithin(gs[0].holdFor() + 5*time.Second); r.Control.CorrelationID != "c2" || r.Header.ErrorCode != protocol.CodeTemporarilyUnavail {
		t.Fatalf("alice read %s, want 480", r.Marshal())
	}
	if gs[0].hasWaiting(b.sid) {
		t.Fatal("the message still waits after its 480")
	}
}

// aliceAndBob connects bob to the second node, then alice to the first.
func aliceAndBob(t *testing.T, urls []string) (a, b *peer) {
	t.Helper()
	b = dial(t, urls[1], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	a = dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	return a, b
}

// TestEarlyReportAnswersTheResend: a receiver's report comes (past its
// dead host) before the sender's session has the send again (its host
// died before writing it: the client sends it again once resumed). It
// is kept, and the send, when it comes, is answered with it at once,
// not relayed again. Before, the report was dropped as owed to nobody,
// and the send waited for an answer its receiver had given already:
// 408 (two thirds of the chaos test's 408s under node kills).
func TestEarlyReportAnswersTheResend(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	if rep := gs[0].takeReport(reportReq{Session: a.sid, Corr: "c2", Type: protocol.TypeResponse, Code: 202, Reason: "Seen"}); rep != reportTaken {
		t.Fatalf("report answered %q", rep)
	}
	aliceMessagesBob(a, "2")
	r := a.read()
	if r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c2" || r.Header.ResponseCode != 202 || r.Header.Reason != "Seen" {
		t.Fatalf("alice read %s, want the early 202 report of c2", r.Marshal())
	}
	// Not relayed again: bob's next frame is alice's next message.
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":3,"correlation_id":"c3"},"header":{"action":"send","initiator":"alice@example.com","target":"bob@example.com"},"payload":{"body":"next"}}`)
	if m := b.read(); m.Header.Action != protocol.ActionSend || !strings.Contains(string(m.Payload), "next") {
		t.Fatalf("bob read %s, want alice's next message", m.Marshal())
	}
	// Used once: a report for a send awaited goes as before.
	if n := counterValue(gs[0].metrics.cluster.WithLabelValues("report", "early")); n != 1 {
		t.Fatalf("%v early reports used, want 1", n)
	}
}

// TestEarlyReportMovesWithTheSession: a report that came before its
// send is in the session's record: the client, resumed on another node
// before it sends again, gets it there.
func TestEarlyReportMovesWithTheSession(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, _ := aliceAndBob(t, urls)
	if rep := gs[0].takeReport(reportReq{Session: a.sid, Corr: "c2", Type: protocol.TypeResponse, Code: 200}); rep != reportTaken {
		t.Fatalf("report answered %q", rep)
	}
	gs[0].save(gs[0].lookup(a.sid))
	a.c.CloseNow()
	a2 := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":1,"csuw":1},"payload":{}}`)
	if r := a2.readWithin(10 * time.Second); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
		t.Fatalf("resume answered %s", r.Marshal())
	}
	a2.sid = a.sid
	aliceMessagesBob(a2, "2")
	wantReport200(t, a2, "2")
}

// TestHostReportSentAgainTakenOnce: a host's report whose delivery timed
// out waits for the sender's session and is sent again (its owner may
// have died, the report unwritten, as in the chaos test with node kills:
// 408 "the message's node went down" for a message received). The
// owner that took it already drops it then: alice, who awaits c9, reads
// its report once. A host's report for a send not awaited yet (its
// record not written when its node died) answers the send when the
// client sends it again.
func TestHostReportSentAgainTakenOnce(t *testing.T) {
	if !mayWaitAfter(fmt.Errorf("gateway: deliver to n2: %w", context.DeadlineExceeded),
		(&Session{}).reportFrame("c9", "", "bob@example.com", protocol.TypeResponse, 200, ""), false, endpoint.Origin{}) {
		t.Fatal("a report whose delivery timed out does not wait for its session")
	}
	gs, urls := newClusterGateways(t, 2)
	a, _ := aliceAndBob(t, urls)
	as := gs[0].lookup(a.sid)
	as.setAwaiting([]awaited{{Corr: "c9", Sub: "m9", Target: "bob@example.com", Node: "n2", Life: gs[1].life, By: time.Now().Add(time.Hour)}})
	as.takeAwaiting()
	report := func(corr string) {
		t.Helper()
		f := as.reportFrame(corr, "m9", "bob@example.com", protocol.TypeResponse, 200, "")
		if _, _, err := gs[1].sendVia(a.sid, "n1", f, false, endpoint.Origin{}); err != nil {
			t.Fatal(err)
		}
	}
	report("c9")
	if r := a.read(); r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c9" {
		t.Fatalf("alice read %s, want the report of c9", r.Marshal())
	}
	report("c9") // sent again
	report("c2") // before the send it reports on
	as.Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionTrickle}}, false)
	if r := a.read(); r.Header.Action != protocol.ActionTrickle {
		t.Fatalf("alice read %s, want no report before her send", r.Marshal())
	}
	if n := counterValue(gs[0].metrics.cluster.WithLabelValues(kindReport, "unawaited")); n != 2 {
		t.Fatalf("%v host reports for sends not awaited, want 2", n)
	}
	aliceMessagesBob(a, "2")
	wantReport200(t, a, "2")
}

// TestAnswerOfATimedOutForwardSentOn: bob's answer to alice's message,
// forwarded to its host, timed out; the host was seen down while the
// forward waited (n9, which no lease names). It is reported to alice's
// session at once: kept for the host's death, already seen, it was never
// sent on, and alice got 408 "the message's node went down" for a
// message bob had (the chaos test with node kills). An answer kept so
// while no life of its host is known is sent on when one shows up.
func TestAnswerOfATimedOutForwardSentOn(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, _ := aliceAndBob(t, urls)
	as := gs[0].lookup(a.sid)
	as.setAwaiting([]awaited{
		{Corr: "c8", Sub: "m8", Target: "bob@example.com", Node: "n8", Life: "earlier", By: time.Now().Add(time.Hour)},
		{Corr: "c9", Sub: "m9", Target: "bob@example.com", Node: "n9", Life: "earlier", By: time.Now().Add(time.Hour)},
	})
	as.takeAwaiting()
	gs[1].keepUnanswered("n9", reportReq{Session: a.sid, Corr: "c9", Type: protocol.TypeResponse, Code: 200})
	if r := a.readWithin(10 * time.Second); r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c9" || r.Header.ResponseCode != 200 {
		t.Fatalf("alice read %s, want bob's report of c9", r.Marshal())
	}
	gs[1].keepAnswer("n8", "", unknownTicket, 0, reportReq{Session: a.sid, Corr: "c8", Type: protocol.TypeResponse, Code: 200})
	gs[1].keepAnswer("n8", "life2", 1, 0, reportReq{Session: a.sid, Corr: "c7", Type: protocol.TypeResponse, Code: 200})
	if r := a.readWithin(10 * time.Second); r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c8" || r.Header.ResponseCode != 200 {
		t.Fatalf("alice read %s, want bob's report of c8", r.Marshal())
	}
}

// TestHostReportPastAFullRecord: a session restored with as many sends
// awaited as its record keeps may have had more, unrecorded: a host's
// report for one goes to the client (not kept as early, as for a send
// not awaited).
func TestHostReportPastAFullRecord(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, _ := aliceAndBob(t, urls)
	as := gs[0].lookup(a.sid)
	full := make([]awaited, maxAwaited)
	for i := range full {
		full[i] = awaited{Corr: "c" + strconv.Itoa(1000+i), Target: "bob@example.com", Node: "n2", Life: gs[1].life, By: time.Now().Add(time.Hour)}
	}
	as.setAwaiting(full)
	as.takeAwaiting()
	f := as.reportFrame("c9", "m9", "bob@example.com", protocol.TypeResponse, 200, "")
	if _, _, err := gs[1].sendVia(a.sid, "n1", f, false, endpoint.Origin{}); err != nil {
		t.Fatal(err)
	}
	if r := a.readWithin(10 * time.Second); r.Control.Type != protocol.TypeResponse || r.Control.CorrelationID != "c9" {
		t.Fatalf("alice read %s, want the report of c9", r.Marshal())
	}
}
