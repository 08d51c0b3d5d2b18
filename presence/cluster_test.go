package presence

import (
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// twoNodes links two Handlers as the gateway links the nodes of a
// cluster: each one's Local feeds the other's RemoteSession.
func twoNodes(t *testing.T) (w1, w2 *world) {
	var h1, h2 *Handler
	w1 = newWorld(t, Options{Local: func(id, s string, r *RemoteSession) { h2.RemoteSession(id, s, r) }})
	w2 = newWorld(t, Options{Local: func(id, s string, r *RemoteSession) { h1.RemoteSession(id, s, r) }})
	h1, h2 = w1.h, w2.h
	// Before either world's leak check: the other node's sessions are
	// remote ones here until they end.
	t.Cleanup(func() {
		for _, w := range []*world{w1, w2} {
			for _, eps := range w.dir.live {
				for _, e := range eps {
					w.h.SessionEnded(e)
				}
			}
		}
	})
	return w1, w2
}

// TestRemoteSessions: a watcher on one node sees a presentity whose
// sessions are on both: the latest publication wins wherever it was
// made, and closed comes only with the last session's end.
func TestRemoteSessions(t *testing.T) {
	w1, w2 := twoNodes(t)
	alice := w2.connect("alice@example.com")
	bob := w1.connect("bob@example.com")
	w1.watch(bob, "c2", "alice@example.com", 0)
	expectAccepted(t, bob.take(), "c2", 3600, open("alice@example.com"))

	w2.publish(alice, `{"status":"open","activity":"away"}`)
	alice.take()
	away := protocol.PresencePayload{Presentity: "alice@example.com", Status: "open", Activity: "away"}
	expectNotify(t, bob.take(), "c2", away)

	alice1 := w1.connect("alice@example.com")
	expectNothing(t, bob)
	w1.publish(alice1, `{"status":"open","activity":"busy"}`)
	alice1.take()
	expectNotify(t, bob.take(), "c2", protocol.PresencePayload{Presentity: "alice@example.com", Status: "open", Activity: "busy"})
	w2.publish(alice, `{"status":"open","activity":"away"}`)
	alice.take()
	expectNotify(t, bob.take(), "c2", away)

	w2.end(alice)
	expectNotify(t, bob.take(), "c2", protocol.PresencePayload{Presentity: "alice@example.com", Status: "open", Activity: "busy"})
	w1.end(alice1)
	expectNotify(t, bob.take(), "c2", closed("alice@example.com"))
}

// TestSessionMovedKeepsPublication: a session that moves from one node
// to the other keeps what it published, and watchers on either node
// hear nothing of the move.
func TestSessionMovedKeepsPublication(t *testing.T) {
	w1, w2 := twoNodes(t)
	alice := w2.connect("alice@example.com")
	w2.publish(alice, `{"status":"closed","note":"invisible"}`)
	alice.take()
	bob, carol := w1.connect("bob@example.com"), w2.connect("carol@example.com")
	w1.watch(bob, "c2", "alice@example.com", 0)
	w2.watch(carol, "c2", "alice@example.com", 0)
	want := protocol.PresencePayload{Presentity: "alice@example.com", Status: "closed", Note: "invisible"}
	expectAccepted(t, bob.take(), "c2", 3600, want)
	expectAccepted(t, carol.take(), "c2", 3600, want)

	move(alice, w2, w1)
	expectNothing(t, bob, carol)

	w1.end(alice)
	expectNotify(t, bob.take(), "c2", closed("alice@example.com"))
	expectNotify(t, carol.take(), "c2", closed("alice@example.com"))
}

// TestWatchesMoveWithTheSession: a watcher's session that moves to the
// other node keeps its watch there, silently, and the node it left
// holds none.
func TestWatchesMoveWithTheSession(t *testing.T) {
	w1, w2 := twoNodes(t)
	alice, bob := w1.connect("alice@example.com"), w1.connect("bob@example.com")
	w1.watch(bob, "c2", "alice@example.com", 0)
	expectAccepted(t, bob.take(), "c2", 3600, open("alice@example.com"))

	move(bob, w1, w2)
	expectNothing(t, bob)
	if n1, n2 := w1.h.Subscriptions(), w2.h.Subscriptions(); n1 != 0 || n2 != 1 {
		t.Fatalf("%d watches on the old node, %d on the new; want 0 and 1", n1, n2)
	}
	w1.publish(alice, `{"status":"open","note":"hi"}`)
	alice.take()
	expectNotify(t, bob.take(), "c2", protocol.PresencePayload{Presentity: "alice@example.com", Status: "open", Note: "hi"})
}

// move moves e, its identity's only session, from one node to another
// as the gateway does: the old node lets go, the new one starts it.
func move(e *fakeEP, from, to *world) {
	from.h.SessionMoved(e)
	from.dir.mu.Lock()
	delete(from.dir.live, e.identity)
	from.dir.mu.Unlock()
	to.dir.mu.Lock()
	to.dir.live[e.identity] = []*fakeEP{e}
	to.dir.mu.Unlock()
	to.h.SessionStarted(e)
}
