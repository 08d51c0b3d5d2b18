package presence

import (
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

func open(presentity string) protocol.PresencePayload {
	return protocol.PresencePayload{Presentity: presentity, Status: "open"}
}

func closed(presentity string) protocol.PresencePayload {
	return protocol.PresencePayload{Presentity: presentity, Status: "closed"}
}

func TestWatchAndPublishAmongThreeUsers(t *testing.T) {
	w := newWorld(t, Options{})
	alice, bob, carol := w.connect("alice@example.com"), w.connect("bob@example.com"), w.connect("carol@example.com")

	w.watch(alice, "c2", "bob@example.com", 0)
	expectAccepted(t, alice.take(), "c2", 3600, open("bob@example.com"))
	w.watch(carol, "c2", "bob@example.com", 0)
	expectAccepted(t, carol.take(), "c2", 3600, open("bob@example.com"))
	w.watch(alice, "c3", "carol@example.com", 0)
	expectAccepted(t, alice.take(), "c3", 3600, open("carol@example.com"))
	expectNothing(t, bob)

	// Bob publishes: both his watchers hear it at once, nobody else.
	w.publish(bob, `{"presentity":"bob@example.com","status":"open","activity":"away","note":"lunch"}`)
	r := bob.take()
	if len(r) != 1 || r[0].Control.Type != protocol.TypeResponse || r[0].Header.ResponseCode != 200 ||
		r[0].Header.Action != protocol.ActionPublish || r[0].Control.CorrelationID != "c1" {
		t.Fatalf("publish answer: %s", dump(r))
	}
	want := protocol.PresencePayload{Presentity: "bob@example.com", Status: "open", Activity: "away", Note: "lunch"}
	expectNotify(t, alice.take(), "c2", want)
	expectNotify(t, carol.take(), "c2", want)

	// Carol goes invisible: only Alice watches her.
	w.publish(carol, `{"status":"closed"}`)
	carol.take()
	expectNotify(t, alice.take(), "c3", closed("carol@example.com"))
	expectNothing(t, bob)

	// The same state again notifies nobody.
	w.publish(carol, `{"status":"closed"}`)
	carol.take()
	expectNothing(t, alice, bob)

	// Notifies name the presentity as the watcher did, and come from it.
	w.watch(bob, "x", "sip:carol@example.com", 0)
	f := bob.take()
	expectAccepted(t, f, "x", 3600, closed("sip:carol@example.com"))
	if f[1].Header.Initiator != "sip:carol@example.com" || f[1].Header.Target != "bob@example.com" {
		t.Errorf("notify header %+v", f[1].Header)
	}
}

func TestNotifyReachesEverySubscriptionOfEveryWatcher(t *testing.T) {
	w := newWorld(t, Options{})
	bob := w.connect("bob@example.com")
	a1, a2 := w.connect("alice@example.com"), w.connect("alice@example.com")
	carol := w.connect("carol@example.com")
	w.watch(a1, "c2", "bob@example.com", 0)
	w.watch(a1, "c3", "sip:bob@example.com", 0)
	w.watch(a2, "c2", "bob@example.com", 0)
	w.watch(carol, "c9", "bob@example.com", 0)
	for _, e := range []*fakeEP{a1, a2, carol} {
		e.take()
	}
	w.publish(bob, `{"status":"open","activity":"meeting"}`)
	bob.take()
	f := a1.take()
	if len(f) != 2 {
		t.Fatalf("alice's first session: %s", dump(f))
	}
	if f[0].Control.SubsessionID == "c3" {
		f[0], f[1] = f[1], f[0]
	}
	expectNotify(t, f[:1], "c2", protocol.PresencePayload{Presentity: "bob@example.com", Status: "open", Activity: "meeting"})
	expectNotify(t, f[1:], "c3", protocol.PresencePayload{Presentity: "sip:bob@example.com", Status: "open", Activity: "meeting"})
	expectNotify(t, a2.take(), "c2", protocol.PresencePayload{Presentity: "bob@example.com", Status: "open", Activity: "meeting"})
	expectNotify(t, carol.take(), "c9", protocol.PresencePayload{Presentity: "bob@example.com", Status: "open", Activity: "meeting"})
}

func TestClosedWhenLastSessionEnds(t *testing.T) {
	w := newWorld(t, Options{})
	alice := w.connect("alice@example.com")
	// Dave has never connected: closed, not an error.
	w.watch(alice, "c2", "dave@example.com", 0)
	expectAccepted(t, alice.take(), "c2", 3600, closed("dave@example.com"))

	d1 := w.connect("dave@example.com")
	expectNotify(t, alice.take(), "c2", open("dave@example.com"))
	d2 := w.connect("dave@example.com")
	w.h.SessionStarted(d2) // again, as on a resume: nothing happens
	expectNothing(t, alice)

	w.publish(d1, `{"status":"open","activity":"busy"}`)
	d1.take()
	expectNotify(t, alice.take(), "c2", protocol.PresencePayload{Presentity: "dave@example.com", Status: "open", Activity: "busy"})
	// The session that published ends: the other one shows open again.
	w.end(d1)
	expectNotify(t, alice.take(), "c2", open("dave@example.com"))
	w.end(d2)
	expectNotify(t, alice.take(), "c2", closed("dave@example.com"))
	expectNothing(t, d1, d2)
	if n := w.h.Presentities(); n != 2 {
		t.Errorf("presentities = %d, want alice and dave (watched)", n)
	}

	// Dave's own subscriptions end with his session.
	d3 := w.connect("dave@example.com")
	alice.take()
	w.watch(d3, "c2", "alice@example.com", 0)
	d3.take()
	if n := w.h.Subscriptions(); n != 2 {
		t.Fatalf("subscriptions = %d", n)
	}
	w.end(d3)
	if n := w.h.Subscriptions(); n != 1 {
		t.Fatalf("subscriptions after dave left = %d", n)
	}
	expectNotify(t, alice.take(), "c2", closed("dave@example.com"))
	w.end(alice)
	if n := w.h.Presentities(); n != 0 {
		t.Errorf("presentities = %d after everyone left", n)
	}
}

// A session that ended before SessionStarted runs does not leave its
// identity open.
func TestSessionStartedAfterItEnded(t *testing.T) {
	w := newWorld(t, Options{})
	alice := w.connect("alice@example.com")
	w.watch(alice, "c2", "bob@example.com", 0)
	alice.take()
	bob := &fakeEP{id: "gone", identity: "bob@example.com"}
	w.h.SessionEnded(bob)
	w.h.SessionStarted(bob)
	expectNothing(t, alice)
}

func TestUnsubscribe(t *testing.T) {
	w := newWorld(t, Options{})
	alice, bob := w.connect("alice@example.com"), w.connect("bob@example.com")
	w.watch(alice, "c2", "bob@example.com", 0)
	alice.take()
	w.unwatch(alice, "c2")
	expectNothing(t, alice)
	if n := w.h.Subscriptions(); n != 0 {
		t.Fatalf("subscriptions = %d", n)
	}
	w.publish(bob, `{"status":"closed"}`)
	bob.take()
	expectNothing(t, alice)
	// A shutdown of nothing is ignored.
	w.unwatch(alice, "c7")
	expectNothing(t, alice)
}

func TestExpiryAndRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, Options{})
		alice, bob := w.connect("alice@example.com"), w.connect("bob@example.com")
		w.watch(alice, "c2", "bob@example.com", 120)
		expectAccepted(t, alice.take(), "c2", 120, open("bob@example.com"))

		time.Sleep(100 * time.Second)
		synctest.Wait()
		expectNothing(t, alice)
		// Refreshed on the same subsession: 200 and a notify, still one.
		w.watch(alice, "c2", "bob@example.com", 120)
		expectAccepted(t, alice.take(), "c2", 120, open("bob@example.com"))
		if n := w.h.Subscriptions(); n != 1 {
			t.Fatalf("subscriptions after refresh = %d", n)
		}
		time.Sleep(100 * time.Second) // 200 s after the start
		synctest.Wait()
		expectNothing(t, alice)
		w.publish(bob, `{"status":"open","note":"still here"}`)
		bob.take()
		expectNotify(t, alice.take(), "c2", protocol.PresencePayload{Presentity: "bob@example.com", Status: "open", Note: "still here"})

		time.Sleep(21 * time.Second)
		synctest.Wait()
		f := alice.take()
		if len(f) != 1 || f[0].Header.Action != protocol.ActionShutdown || f[0].Control.SubsessionID != "c2" ||
			f[0].Control.Type != protocol.TypeMessage {
			t.Fatalf("at expiry: %s", dump(f))
		}
		if n := w.h.Subscriptions(); n != 0 {
			t.Fatalf("subscriptions after expiry = %d", n)
		}
		w.publish(bob, `{"status":"closed"}`)
		bob.take()
		expectNothing(t, alice)
		// A refresh after expiry is a new subscription.
		w.watch(alice, "c2", "bob@example.com", 0)
		expectAccepted(t, alice.take(), "c2", 3600, closed("bob@example.com"))
	})
}

func TestExpiryBounds(t *testing.T) {
	w := newWorld(t, Options{Config: Config{Expiry: 600, MinExpiry: 30}})
	alice := w.connect("alice@example.com")
	for _, tc := range []struct{ asked, granted int }{{0, 600}, {100, 100}, {5, 30}, {100000, 600}} {
		w.watch(alice, "e"+strconv.Itoa(tc.asked), "bob@example.com", tc.asked)
		f := alice.take()
		if len(f) == 0 || f[0].Header.Expiry != tc.granted {
			t.Errorf("asked %d: %s", tc.asked, dump(f))
		}
	}
}

func TestRefreshOfAnotherTarget(t *testing.T) {
	w := newWorld(t, Options{})
	alice := w.connect("alice@example.com")
	w.watch(alice, "c2", "bob@example.com", 0)
	alice.take()
	w.watch(alice, "c2", "carol@example.com", 0)
	expectError(t, alice.take(), protocol.ActionStart, 400)
	if n := w.h.Subscriptions(); n != 1 {
		t.Fatalf("subscriptions = %d", n)
	}
}

func TestBounds(t *testing.T) {
	w := newWorld(t, Options{Config: Config{MaxSubscriptions: 2, MaxWatchers: 2}})
	alice, bob, carol := w.connect("alice@example.com"), w.connect("bob@example.com"), w.connect("carol@example.com")
	w.watch(alice, "c2", "x@example.com", 0)
	w.watch(alice, "c3", "y@example.com", 0)
	alice.take()
	w.watch(alice, "c4", "z@example.com", 0)
	expectError(t, alice.take(), protocol.ActionStart, 503)
	// A refresh is not a new subscription.
	w.watch(alice, "c3", "y@example.com", 0)
	if f := alice.take(); len(f) != 2 || f[0].Header.ResponseCode != 200 {
		t.Fatalf("refresh at the bound: %s", dump(f))
	}
	// Ending one makes room.
	w.unwatch(alice, "c3")
	w.watch(alice, "c4", "z@example.com", 0)
	if f := alice.take(); len(f) != 2 || f[0].Header.ResponseCode != 200 {
		t.Fatalf("after making room: %s", dump(f))
	}

	w.watch(bob, "c2", "x@example.com", 0)
	bob.take()
	w.watch(carol, "c2", "x@example.com", 0)
	expectError(t, carol.take(), protocol.ActionStart, 503)
	if n := w.h.Subscriptions(); n != 3 {
		t.Fatalf("subscriptions = %d", n)
	}
}

func TestBadPublish(t *testing.T) {
	w := newWorld(t, Options{})
	alice, bob := w.connect("alice@example.com"), w.connect("bob@example.com")
	w.watch(alice, "c2", "bob@example.com", 0)
	alice.take()
	for _, tc := range []struct {
		name    string
		payload string
		code    int
	}{
		{"unknown status", `{"status":"busy"}`, 400},
		{"no status", `{"activity":"away"}`, 400},
		{"empty payload", ``, 400},
		{"status not a string", `{"status":1}`, 400},
		{"long note", `{"status":"open","note":"` + strings.Repeat("n", 1025) + `"}`, 400},
		{"long activity", `{"status":"open","activity":"` + strings.Repeat("a", 65) + `"}`, 400},
		{"control character", `{"status":"open","note":"a\r\nb"}`, 400},
		{"nul", `{"status":"open","note":"a\u0000b"}`, 400},
		{"someone else", `{"presentity":"carol@example.com","status":"open"}`, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.publish(bob, tc.payload)
			expectError(t, bob.take(), protocol.ActionPublish, tc.code)
			expectNothing(t, alice)
		})
	}
	// Claiming to be someone else.
	w.frame(bob, protocol.TypeRequest, protocol.ActionPublish, "p", protocol.Header{Initiator: "carol@example.com"}, `{"status":"open"}`)
	expectError(t, bob.take(), protocol.ActionPublish, 403)
	w.frame(bob, protocol.TypeRequest, protocol.ActionStart, "q", protocol.Header{Initiator: "carol@example.com", Target: "alice@example.com"}, "")
	expectError(t, bob.take(), protocol.ActionStart, 403)
	// A bad target.
	w.frame(bob, protocol.TypeRequest, protocol.ActionStart, "r", protocol.Header{}, "")
	expectError(t, bob.take(), protocol.ActionStart, 400)
	w.frame(bob, protocol.TypeRequest, protocol.ActionStart, "r", protocol.Header{Target: "a b"}, "")
	expectError(t, bob.take(), protocol.ActionStart, 400)
	// Still fine afterwards.
	w.publish(bob, `{"presentity":"sip:bob@example.com","status":"closed"}`)
	if f := bob.take(); len(f) != 1 || f[0].Header.ResponseCode != 200 {
		t.Fatalf("good publish: %s", dump(f))
	}
	expectNotify(t, alice.take(), "c2", closed("bob@example.com"))
}

func TestNonWebPresentityWithoutUpstream(t *testing.T) {
	w := newWorld(t, Options{})
	alice := w.connect("alice@example.com")
	w.watch(alice, "c2", "sip:someone@sip.example.net", 0)
	expectError(t, alice.take(), protocol.ActionStart, 404)
	w.watch(alice, "c3", "tel:+15551234567", 0)
	expectError(t, alice.take(), protocol.ActionStart, 404)
	if n := w.h.Subscriptions(); n != 0 {
		t.Fatalf("subscriptions = %d", n)
	}
}

func TestAllow(t *testing.T) {
	w := newWorld(t, Options{Allow: func(watcher, presentity string) bool {
		return presentity != "boss@example.com"
	}})
	alice := w.connect("alice@example.com")
	w.watch(alice, "c2", "sip:boss@example.com", 0)
	expectError(t, alice.take(), protocol.ActionStart, 404) // unknown sip: target
	w.connect("boss@example.com")
	w.watch(alice, "c2", "sip:boss@example.com", 0)
	expectError(t, alice.take(), protocol.ActionStart, 403)
}

func TestOtherFrames(t *testing.T) {
	w := newWorld(t, Options{})
	alice := w.connect("alice@example.com")
	// A client's answer to a notify needs nothing.
	w.frame(alice, protocol.TypeResponse, protocol.ActionStart, "c2", protocol.Header{ResponseCode: 200}, "")
	w.frame(alice, protocol.TypeError, protocol.ActionStart, "c2", protocol.Header{ErrorCode: 481}, "")
	expectNothing(t, alice)
}

// TestSubscriptionQuota: a watcher's subscriptions, web and upstream
// alike, come from its identity's budget: past it a start gets 503
// "subscription limit reached"; every way a subscription ends (unwatch,
// the upstream terminating it, expiry, the session's end) gives its
// share back.
func TestSubscriptionQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{}
		w := newWorld(t, Options{Upstream: up})
		q := &fakeQuota{max: 3}
		a := w.connect("alice@example.com", withQuota(q))
		for _, id := range []string{"b1@example.com", "b2@example.com", "b3@example.com", "b4@example.com"} {
			w.connect(id)
		}
		w.watch(a, "c1", "b1@example.com", 0)
		w.watch(a, "c2", "b2@example.com", 0)
		w.watch(a, "c3", "sip:carol@sip.example.net", 0) // upstream
		a.take()
		w.watch(a, "c4", "b4@example.com", 0)
		f := a.take()
		expectError(t, f, protocol.ActionStart, 503)
		if f[0].Header.Reason != "subscription limit reached" {
			t.Fatalf("refusal reason %q", f[0].Header.Reason)
		}
		// A second session of the same identity shares the budget.
		a2 := w.connect("alice@example.com", withQuota(q))
		w.watch(a2, "c1", "b4@example.com", 0)
		expectError(t, a2.take(), protocol.ActionStart, 503)

		w.unwatch(a, "c1")
		w.watch(a, "c4", "b4@example.com", 0)
		expectAccepted(t, a.take(), "c4", 3600, open("b4@example.com"))

		up.ev(0).Accepted()
		up.ev(0).Terminated("deactivated")
		if q.Held() != 2 {
			t.Fatalf("%d held after the upstream ended one of 3", q.Held())
		}
		w.watch(a, "c5", "b3@example.com", 60)
		if q.Held() != 3 {
			t.Fatalf("%d held, want 3", q.Held())
		}
		time.Sleep(61 * time.Second) // c5 expires; fake time
		synctest.Wait()
		if q.Held() != 2 {
			t.Fatalf("%d held after an expiry", q.Held())
		}
		w.end(a)
		w.end(a2)
		if q.Held() != 0 || w.h.Subscriptions() != 0 {
			t.Fatalf("after the sessions ended: %d held, %d subscriptions", q.Held(), w.h.Subscriptions())
		}
	})
}
