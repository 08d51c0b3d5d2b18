package presence

import (
	"sync"
	"testing"
	"time"

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

// TestUpstreamWatchMovesWithTheSession (issue 15): a watch of a SIP
// presentity moves with its session: the node it left ends its
// subscription upstream, the new node subscribes again for the same
// subsession, silently; the new subscription's first NOTIFY, with the
// state the client saw last, is not told again, and its next change is.
func TestUpstreamWatchMovesWithTheSession(t *testing.T) {
	up1, up2 := &fakeUpstream{}, &fakeUpstream{}
	var h1, h2 *Handler
	var mu sync.Mutex
	var shares []*RemoteSession
	w1 := newWorld(t, Options{Upstream: up1, Local: func(id, s string, r *RemoteSession) {
		mu.Lock()
		shares = append(shares, r)
		mu.Unlock()
		h2.RemoteSession(id, s, r)
	}})
	w2 := newWorld(t, Options{Upstream: up2, Local: func(id, s string, r *RemoteSession) { h1.RemoteSession(id, s, r) }})
	h1, h2 = w1.h, w2.h
	bob := w1.connect("bob@example.com")
	t.Cleanup(func() { w2.end(bob) })
	w1.watch(bob, "c2", "sip:carol@sip.example.net", 300)
	if n := len(shares[len(shares)-1].Watches); n != 0 {
		t.Fatalf("a watch not yet answered is in the share: %d", n)
	}
	desk := protocol.PresencePayload{Presentity: "sip:carol@sip.example.net", Status: "open", Note: "desk"}
	up1.ev(0).Accepted()
	up1.ev(0).Notify(desk)
	bob.take()
	last := shares[len(shares)-1]
	if len(last.Watches) != 1 || !last.Watches[0].Upstream || last.Watches[0].Last == nil || *last.Watches[0].Last != desk {
		t.Fatalf("share after the notify: %+v", last.Watches)
	}

	move(bob, w1, w2)
	if up1.stopped() != 1 || w1.h.Subscriptions() != 0 {
		t.Fatalf("old node: %d stops, %d subscriptions; want 1 and 0", up1.stopped(), w1.h.Subscriptions())
	}
	if len(up2.reqs) != 1 || up2.reqs[0].Presentity != "sip:carol@sip.example.net" || up2.reqs[0].Subscriber != "bob@example.com" {
		t.Fatalf("new node's requests %+v", up2.reqs)
	}
	up2.ev(0).Accepted()
	up2.ev(0).Notify(desk)
	expectNothing(t, bob)
	up2.ev(0).Notify(protocol.PresencePayload{Status: "closed"})
	expectNotify(t, bob.take(), "c2", closed("sip:carol@sip.example.net"))
	// Late events of the old subscription go nowhere.
	up1.ev(0).Notify(protocol.PresencePayload{Status: "open"})
	expectNothing(t, bob)

	// The client's unsubscribe reaches the new subscription.
	w2.unwatch(bob, "c2")
	if up2.stopped() != 1 || w2.h.Subscriptions() != 0 {
		t.Fatalf("new node after the unwatch: %d stops, %d subscriptions", up2.stopped(), w2.h.Subscriptions())
	}
}

// TestUpstreamStateKeptBeforeTold: the state an upstream NOTIFY tells
// the client is in the share given to Options.Local before the notify
// is sent. The gateway writes a session's record, share and all, ahead
// of the frames it sends: exported after, a record written in between
// (a kill right after) held the notify without its state, and the
// process restarted on it told the client that state again (gateway
// TestSubscriptionsAcrossRestart).
func TestUpstreamStateKeptBeforeTold(t *testing.T) {
	up := &fakeUpstream{}
	var bob *fakeEP
	// told: the frames bob had been sent when the share first held desk.
	told := -1
	desk := protocol.PresencePayload{Presentity: "sip:carol@sip.example.net", Status: "open", Note: "desk"}
	w := newWorld(t, Options{Upstream: up, Local: func(_, _ string, r *RemoteSession) {
		if told < 0 && r != nil && len(r.Watches) == 1 && r.Watches[0].Last != nil && *r.Watches[0].Last == desk {
			bob.mu.Lock()
			told = len(bob.frames)
			bob.mu.Unlock()
		}
	}})
	bob = w.connect("bob@example.com")
	w.watch(bob, "c2", "sip:carol@sip.example.net", 300)
	up.ev(0).Accepted()
	bob.take()
	up.ev(0).Notify(desk)
	if told != 0 {
		t.Fatalf("the share held the state told with %d frames sent, want 0 (before the notify)", told)
	}
	expectNotify(t, bob.take(), "c2", desk)
}

// TestUpstreamWatchFromRecord: a share read back from a record (a
// restart, or a dead node's session) makes the watch again at the
// session's start; a state the client never saw is told, and a
// refusal of the new SUBSCRIBE ends the watch with a shutdown.
func TestUpstreamWatchFromRecord(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	bob := &fakeEP{id: "S9-bob@example.com", identity: "bob@example.com"}
	w.h.RemoteSession(bob.identity, bob.id, &RemoteSession{Watches: []Watch{
		{Subsession: "c2", Target: "sip:carol@sip.example.net", Expires: time.Now().Add(time.Minute), Upstream: true},
		{Subsession: "c3", Target: "sip:dave@sip.example.net", Expires: time.Now().Add(time.Minute), Upstream: true},
		{Subsession: "c4", Target: "sip:old@sip.example.net", Expires: time.Now().Add(-time.Second), Upstream: true},
	}})
	w.dir.mu.Lock()
	w.dir.live[bob.identity] = []*fakeEP{bob}
	w.dir.mu.Unlock()
	w.h.SessionStarted(bob)
	if len(up.reqs) != 2 || w.h.Subscriptions() != 2 {
		t.Fatalf("requests %+v, subscriptions %d; want the two live watches", up.reqs, w.h.Subscriptions())
	}
	expectNothing(t, bob)
	up.ev(0).Accepted()
	up.ev(0).Notify(protocol.PresencePayload{Status: "open"})
	expectNotify(t, bob.take(), "c2", open("sip:carol@sip.example.net"))
	up.ev(1).Rejected(404, "Not Found")
	if f := bob.take(); len(f) != 1 || f[0].Header.Action != protocol.ActionShutdown || f[0].Control.SubsessionID != "c3" {
		t.Fatalf("after the refusal: %s", dump(f))
	}
}
