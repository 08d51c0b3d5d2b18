package gateway

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// newClusterDying starts n gateways, the store of the which-th made
// (1-based) wrapped to be killed: a node dying before it writes.
func newClusterDying(t *testing.T, n int, which int32) ([]*Gateway, []string, *killedStore) {
	t.Helper()
	var made atomic.Int32
	var dying *killedStore
	gs, urls := newClusterGatewaysOn(t, n, func(st store.Store) store.Store {
		if made.Add(1) != which {
			return st
		}
		dying = &killedStore{Store: st}
		return dying
	})
	return gs, urls, dying
}

// resumeAlice resumes alice's session sid, an Oracle client, at url.
func resumeAlice(t *testing.T, url, sid string) *peer {
	t.Helper()
	a2 := dial(t, url, protocol.SubprotocolOracle, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":3,"csuw":2},"payload":{}}`)
	if r := a2.readWithin(10 * time.Second); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != sid {
		t.Fatalf("resume answered %s", r.Marshal())
	}
	a2.sid = sid
	return a2
}

// readAlicesMessage reads, within d, alice's message to bob at w.
func readAlicesMessage(t *testing.T, w *peer, d time.Duration) *protocol.Frame {
	t.Helper()
	m := w.readWithin(d)
	if m.Control.Type != protocol.TypeRequest || m.Header.Action != protocol.ActionSend || m.Header.Initiator != "alice@example.com" {
		t.Fatalf("bob read %s, want alice's message", m.Marshal())
	}
	return m
}

// aliceWaitsForBob: bob's node n2 dies, and alice's message to him
// waits on her node n1, in her record, written.
func aliceWaitsForBob(t *testing.T, gs []*Gateway, urls []string) (a, b *peer) {
	t.Helper()
	a, b = aliceAndBob(t, urls)
	gs[1].node.Close()
	b.c.CloseNow()
	waitFor(t, "n1 to see n2 down", func() bool { return gs[0].node.Down("n2") })
	aliceMessagesBob(a, "2")
	waitFor(t, "alice's message in her record", func() bool { return outboxOf(gs[0], a.sid) == 1 })
	gs[0].save(gs[0].lookup(a.sid))
	return a, b
}

// outboxOf returns how many messages of session id wait in its record.
func outboxOf(g *Gateway, id string) int {
	s := g.lookup(id)
	if s == nil {
		return -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outbox)
}

// TestWaitingMessageOutlivesItsNode: alice's message to bob, whose node
// died, waits on alice's node n1 for his resume; n1 dies too, its store
// gone first. The message was in alice's record, written with the state
// that took her send: n3, which takes her session at her resume, sends
// it again, and bob, resumed there, gets it; his answer is her report.
// Before, it died with n1's memory, and alice got 408.
func TestWaitingMessageOutlivesItsNode(t *testing.T) {
	gs, urls, dying := newClusterDying(t, 3, 1)
	a, b := aliceWaitsForBob(t, gs, urls)
	dying.killed.Store(true)
	gs[0].node.Close()
	// Its memory goes with it: the wait (a report it makes now is never
	// written, so never sent).
	gs[0].dropWaiting(b.sid, "test: the node died")
	a.c.CloseNow()
	a2 := resumeAlice(t, urls[2], a.sid)
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	m := readAlicesMessage(t, w, gs[2].holdFor()+10*time.Second)
	bobAnswers(w, m)
	wantReport200(t, a2, "2")
	waitFor(t, "alice's record without the message", func() bool { return outboxOf(gs[2], a.sid) == 0 })
}

// TestWaitingMessageFollowsALiveOwner: alice's message to bob, whose
// node died, waits on alice's node n1; alice resumes on n3 while n1
// lives. n1 goes on with the wait and n3 sends nothing again: bob,
// resumed, gets the message once, and alice his report at n3, which
// then forgets the message in her record.
func TestWaitingMessageFollowsALiveOwner(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	a, b := aliceWaitsForBob(t, gs, urls)
	a.c.CloseNow()
	a2 := resumeAlice(t, urls[2], a.sid)
	if n := counterValue(gs[2].metrics.cluster.WithLabelValues(kindWaiting, "outbox_resent")); n != 0 {
		t.Fatalf("n3 sent %v messages again, want none (n1 lives)", n)
	}
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	m := readAlicesMessage(t, w, gs[0].holdFor()+10*time.Second)
	bobAnswers(w, m)
	wantReport200(t, a2, "2")
	waitFor(t, "alice's record without the message", func() bool { return outboxOf(gs[2], a.sid) == 0 })
}
