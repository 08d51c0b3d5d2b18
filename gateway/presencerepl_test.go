package gateway

import (
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// watchPresence subscribes p to target on subsession sub and returns
// the answer (the first notify is left to read).
func watchPresence(t *testing.T, p *peer, sub, target string) {
	t.Helper()
	p.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: sub},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: target},
	})
	if r := p.read(); r.Header.ResponseCode != 200 {
		t.Fatalf("watch of %s: %s", target, r.Marshal())
	}
}

func publishPresence(t *testing.T, p *peer, st protocol.PresencePayload) {
	t.Helper()
	p.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackagePresence, SubsessionID: "pub"},
		Header:  protocol.Header{Action: protocol.ActionPublish},
		Payload: protocol.EncodePayload(st),
	})
	if r := p.read(); r.Header.ResponseCode != 200 {
		t.Fatalf("publish: %s", r.Marshal())
	}
}

// bobWatchesAlice connects alice on aliceURL and bob on bobURL, who
// watches her and has heard she is open.
func bobWatchesAlice(t *testing.T, aliceURL, bobURL string) (a, b *peer) {
	t.Helper()
	a = dial(t, aliceURL, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b = dial(t, bobURL, protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	watchPresence(t, b, "w1", "alice@example.com")
	notifiedUntil(t, b, protocol.PresencePayload{Status: "open"})
	return a, b
}

// notifiedUntil reads p's notifies until one carries want (presentity
// aside); read fails the test after its timeout.
func notifiedUntil(t *testing.T, p *peer, want protocol.PresencePayload) {
	t.Helper()
	for {
		n := p.read()
		expect(t, n, protocol.TypeMessage, protocol.ActionNotify)
		var st protocol.PresencePayload
		if err := protocol.DecodePayload(n.Payload, &st); err != nil {
			t.Fatal(err)
		}
		st.Presentity = ""
		if st == want {
			return
		}
	}
}

// TestClusterPresenceAcrossNodes: a watcher on n1 of alice, whose
// session is on n2, sees her open, then what she publishes there, then
// closed when her last session ends. Before the presence bucket n1
// knew only its own sessions: alice stayed closed there.
func TestClusterPresenceAcrossNodes(t *testing.T) {
	_, urls := newClusterGateways(t, 2)
	a, b := bobWatchesAlice(t, urls[1], urls[0])
	away := protocol.PresencePayload{Status: "open", Activity: "away", Note: "lunch"}
	publishPresence(t, a, away)
	notifiedUntil(t, b, away)
	a.c.Close(websocket.StatusNormalClosure, "")
	notifiedUntil(t, b, protocol.PresencePayload{Status: "closed"})
}

// TestClusterPresenceMoves: alice's session, which published "away" on
// n2, resumes on n1: watchers on both nodes, old and new, go on seeing
// "away" (n1 takes her publication over from the bucket), and see her
// closed when the session ends on n1.
func TestClusterPresenceMoves(t *testing.T) {
	_, urls := newClusterGateways(t, 2)
	a := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	away := protocol.PresencePayload{Status: "open", Activity: "away", Note: "lunch"}
	publishPresence(t, a, away)
	b := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	watchPresence(t, b, "w1", "alice@example.com")
	notifiedUntil(t, b, away)

	moved := resumeWS(t, urls[0], "alice@example.com", a.sid, a.seq+1, a.last)
	for _, u := range urls {
		c := dial(t, u, protocol.SubprotocolOracle, nil)
		c.connect("carol@example.com")
		watchPresence(t, c, "w1", "alice@example.com")
		n := c.read()
		if !strings.Contains(string(n.Payload), `"lunch"`) {
			t.Fatalf("a new watcher on %s after the move: %s", u, n.Payload)
		}
	}
	moved.c.Close(websocket.StatusNormalClosure, "")
	notifiedUntil(t, b, protocol.PresencePayload{Status: "closed"})
}

// TestClusterPresenceWatchesMove: bob's session, which watches alice,
// resumes on another node: the watch is there, made again from his
// session's entry (no start from the client), and the node he left
// holds none; alice's next publication reaches him, and his unwatch on
// the new node ends it. Before, the new node had no watch and the old
// one kept its own, notifying through the moved session for as long as
// it lived.
func TestClusterPresenceWatchesMove(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := bobWatchesAlice(t, urls[0], urls[0])
	// n2 has heard bob's entry with its watch once it knows his session.
	waitFor(t, "n2 to hear bob's watch", func() bool {
		p := gs[1].prepl.Load()
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.seen[presenceKey{"bob@example.com", b.sid}].watches == 1
	})

	moved := resumeWS(t, urls[1], "bob@example.com", b.sid, b.seq+1, b.last)
	if n0, n1 := gs[0].presence.Subscriptions(), gs[1].presence.Subscriptions(); n0 != 0 || n1 != 1 {
		t.Fatalf("after the move: %d watches on n1, %d on n2; want 0 and 1", n0, n1)
	}
	away := protocol.PresencePayload{Status: "open", Activity: "away"}
	publishPresence(t, a, away)
	notifiedUntil(t, moved, away)
	moved.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackagePresence, SubsessionID: "w1"},
		Header: protocol.Header{Action: protocol.ActionShutdown}})
	waitFor(t, "the unwatch", func() bool { return gs[1].presence.Subscriptions() == 0 })
}
