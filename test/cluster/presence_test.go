package cluster

import (
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// notified waits, within 15 s, for a presence notify to c carrying want
// (presentity aside), skipping other events and earlier states.
func notified(t *testing.T, c *client.Client, want protocol.PresencePayload) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	var last protocol.PresencePayload
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok || ev.Kind == client.EventClosed {
				t.Fatalf("%s: closed waiting for %+v", c.Identity(), want)
			}
			f := ev.Frame
			if ev.Kind != client.EventFrame || f.Control.Package != protocol.PackagePresence || f.Header.Action != protocol.ActionNotify {
				continue
			}
			if err := protocol.DecodePayload(f.Payload, &last); err != nil {
				t.Fatal(err)
			}
			last.Presentity = ""
			if last == want {
				return
			}
		case <-timeout:
			t.Fatalf("%s: no notify of %+v (last %+v)", c.Identity(), want, last)
		}
	}
}

// TestPresenceAcrossNodes: bob on n1 watches alice, whose session is on
// n2: he sees her open, what she publishes there, and closed when she
// leaves. Each node knew only its own sessions before: alice stayed
// closed for bob.
func TestPresenceAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 1)[:1], nil)
	bob := dial(t, "bob@example.com", urls(nodes, 0)[:1], nil)
	if _, err := bob.Watch(tctx(t), "w1", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, protocol.PresencePayload{Status: "open"})
	away := protocol.PresencePayload{Status: "open", Activity: "away", Note: "lunch"}
	if err := alice.Publish(tctx(t), away); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, away)
	back := protocol.PresencePayload{Status: "open", Note: "back"}
	if err := alice.Publish(tctx(t), back); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, back)
	alice.Close()
	notified(t, bob, protocol.PresencePayload{Status: "closed"})
}

// TestPresenceNodeKilled: kill -9 of the node of bob, who watches alice
// and has published his own state: his session resumes on another node
// with the watch (he does not subscribe again) and his state, and
// alice's next publication reaches him there.
func TestPresenceNodeKilled(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0)[:1], nil)
	bob := dial(t, "bob@example.com", urls(nodes, 1), nil)
	id := bob.SessionID()
	if _, err := bob.Watch(tctx(t), "w1", "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, protocol.PresencePayload{Status: "open"})
	// Bob's publication goes to the bucket after his watch, in the same
	// entry: once alice sees it, the entry that carries his watch is
	// there for whoever takes his session over.
	busy := protocol.PresencePayload{Status: "open", Activity: "busy"}
	if err := bob.Publish(tctx(t), busy); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Watch(tctx(t), "w1", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	notified(t, alice, busy)

	nodes[1].stop(t, syscall.SIGKILL)
	event(t, bob, client.EventResumed)
	if bob.SessionID() != id {
		t.Fatalf("bob's session %s became %s: not resumed", id, bob.SessionID())
	}
	away := protocol.PresencePayload{Status: "open", Activity: "away"}
	if err := alice.Publish(tctx(t), away); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, away)
	// His publications reach alice from his new node.
	dinner := protocol.PresencePayload{Status: "open", Note: "dinner"}
	if err := bob.Publish(tctx(t), dinner); err != nil {
		t.Fatal(err)
	}
	notified(t, alice, dinner)
}
