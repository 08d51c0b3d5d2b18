package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestPresenceAcrossRestart: a single gateway on the nats store, killed
// (nothing written after the kill) and started again on its data
// directory: alice's publication is there before she resumes (a new
// watcher sees it), bob's session resumes with his watch of her, made
// again with no start from him, and what she publishes after the
// restart reaches him. Before, restored sessions came back without
// their presence: alice was closed, and bob, whose client still held
// the subscription, heard nothing more (issue 13).
func TestPresenceAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := startKillable(t, ctx, nil)
	url1 := k.url
	a := dial(t, url1, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	away := protocol.PresencePayload{Status: "open", Activity: "away", Note: "lunch"}
	publishPresence(t, a, away)
	b := dial(t, url1, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	watchPresence(t, b, "w1", "alice@example.com")
	notifiedUntil(t, b, away)

	// The kill: no write from here on, the sockets gone.
	k.kill(ctx)
	url2 := k.restart(ctx, nil)

	c := dial(t, url2, protocol.SubprotocolJSONrtc, nil)
	c.connect("carol@example.com")
	watchPresence(t, c, "w1", "alice@example.com")
	if n := c.read(); !strings.Contains(string(n.Payload), `"lunch"`) {
		t.Fatalf("alice's state after the restart, before she resumed: %s", n.Payload)
	}
	b2 := resumeWS(t, url2, "bob@example.com", b.sid, b.seq+1, b.last)
	a2 := resumeWS(t, url2, "alice@example.com", a.sid, a.seq+1, a.last)
	busy := protocol.PresencePayload{Status: "open", Activity: "busy", Note: "in a call"}
	publishPresence(t, a2, busy)
	notifiedUntil(t, b2, busy)
}

// TestClusterPresenceWatchesFromRecord: bob's session, which watches
// alice, moves to a node that has no entry of his in the presence bucket
// (gone, as when the bucket's memory is: every node restarted): the new
// node makes his watch again from his record, and alice's next
// publication reaches him. Before, the bucket was the only source on a
// takeover: the watch was lost.
func TestClusterPresenceWatchesFromRecord(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b := bobWatchesAlice(t, urls[0], urls[0])
	seen := func(watches int) func() bool {
		return func() bool {
			p := gs[1].prepl.Load()
			p.mu.Lock()
			defer p.mu.Unlock()
			s, ok := p.seen[presenceKey{"bob@example.com", b.sid}]
			return ok && s.watches == watches || !ok && watches < 0
		}
	}
	waitFor(t, "n2 to hear bob's watch", seen(1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := gs[0].prepl.Load().shared.Delete(ctx, "bob@example.com", b.sid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 to hear the entry gone", seen(-1))

	moved := resumeWS(t, urls[1], "bob@example.com", b.sid, b.seq+1, b.last)
	if n := gs[1].presence.Subscriptions(); n != 1 {
		t.Fatalf("after the move: %d watches on n2, want 1", n)
	}
	away := protocol.PresencePayload{Status: "open", Activity: "away"}
	publishPresence(t, a, away)
	notifiedUntil(t, moved, away)
}
