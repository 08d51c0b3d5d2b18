package gateway

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestReportOfADeadHost: alice's message awaits bob's answer on n1, the
// node that took her send (its host); alice resumes on n2, and n1 goes
// down before bob answers. Her client gets the report n1 can no longer
// give: 408 "no delivery report", soon after n1's lease is gone. Before,
// nothing came, and her request waited on (the cluster chaos test: 87
// of 1,000 sends without a report).
func TestReportOfADeadHost(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := aliceAndBob(t, urls)
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":2,"correlation_id":"c2"},"header":{"action":"send","initiator":"alice@example.com","target":"bob@example.com"},"payload":{"body":"hi"}}`)
	if f := b.read(); f.Header.Action != protocol.ActionSend {
		t.Fatalf("bob read %s", f.Marshal())
	}
	// Bob does not answer yet. Alice resumes on n2 (her record has
	// her send: acknowledged only once written).
	gs[0].save(gs[0].lookup(a.sid))
	a.c.CloseNow()
	a2 := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":3,"csuw":2},"payload":{}}`)
	if r := a2.read(); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
		t.Fatalf("resume answered %s", r.Marshal())
	}
	// n1 goes (its lease given up), with the message.
	gs[0].node.Close()
	start := time.Now()
	r := a2.readWithin(10 * time.Second)
	if r.Control.Type != protocol.TypeError || r.Control.CorrelationID != "c2" || r.Header.ErrorCode != protocol.CodeRequestTimeout {
		t.Fatalf("alice read %s, want the 408 report of c2", r.Marshal())
	}
	t.Logf("report after %v", time.Since(start).Round(time.Millisecond))
}

// TestReportOwedFromRecord: the sends owed a report that a session's
// record brings are answered by the node that takes the session: at once
// when their host was this node in an earlier life (a restart on the
// data directory: its messages died with it), by their time otherwise.
func TestReportOwedFromRecord(t *testing.T) {
	g, a := aliceOnNode(t, nil)
	s := g.lookup(a.sid)
	s.setAwaiting([]awaited{
		{Corr: "c7", Target: "bob@example.com", Node: g.self(), Life: "earlier", By: time.Now().Add(time.Hour)},
		{Corr: "c8", Target: "bob@example.com", Node: g.self(), Life: g.life, By: time.Now().Add(time.Hour)},
		{Corr: "c9", Target: "bob@example.com", Node: g.self(), Life: g.life, By: time.Now().Add(-time.Second)},
	})
	s.takeAwaiting()
	got := map[string]string{}
	for range 2 {
		r := a.read()
		if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeRequestTimeout {
			t.Fatalf("alice read %s, want a 408 report", r.Marshal())
		}
		got[r.Control.CorrelationID] = r.Header.Reason
	}
	if got["c7"] != "no delivery report: the message's node went down" || got["c9"] != "no delivery report" {
		t.Fatalf("reports %v, want c7 (earlier life) and c9 (past its time)", got)
	}
	s.mu.Lock()
	_, owed := s.awaiting["c8"]
	s.mu.Unlock()
	if !owed {
		t.Fatal("c8, within its time and its host alive, was answered")
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
