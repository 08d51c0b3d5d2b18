package presence

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// fakeUpstream records subscriptions and publications; the test drives
// the events.
type fakeUpstream struct {
	mu     sync.Mutex
	reqs   []UpstreamRequest
	evs    []UpstreamEvents
	stops  []int
	pubs   []protocol.PresencePayload
	inline func(UpstreamEvents)
}

func (u *fakeUpstream) Subscribe(req UpstreamRequest, ev UpstreamEvents) func() {
	u.mu.Lock()
	i := len(u.reqs)
	u.reqs = append(u.reqs, req)
	u.evs = append(u.evs, ev)
	inline := u.inline
	u.mu.Unlock()
	if inline != nil {
		inline(ev)
	}
	return func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.stops = append(u.stops, i)
	}
}

func (u *fakeUpstream) Publish(presentity string, st protocol.PresencePayload) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if st.Presentity != presentity {
		panic("presentity mismatch")
	}
	u.pubs = append(u.pubs, st)
}

// Withdraw is recorded among the publications as status "withdrawn".
func (u *fakeUpstream) Withdraw(presentity string) {
	u.Publish(presentity, withdrawn(presentity))
}

func withdrawn(id string) protocol.PresencePayload {
	return protocol.PresencePayload{Presentity: id, Status: "withdrawn"}
}

func (u *fakeUpstream) ev(i int) UpstreamEvents {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.evs[i]
}

func (u *fakeUpstream) takePubs() []protocol.PresencePayload {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.pubs
	u.pubs = nil
	return p
}

func (u *fakeUpstream) stopped() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.stops)
}

func TestUpstreamSubscription(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	alice := w.connect("alice@example.com")
	w.watch(alice, "c2", "sip:carol@sip.example.net", 300)
	expectNothing(t, alice)
	if len(up.reqs) != 1 || up.reqs[0].Presentity != "sip:carol@sip.example.net" ||
		up.reqs[0].Subscriber != "alice@example.com" || up.reqs[0].Expiry != 300*time.Second {
		t.Fatalf("requests %+v", up.reqs)
	}
	// A refresh before the answer is refused: the first is outstanding.
	w.watch(alice, "c2", "sip:carol@sip.example.net", 300)
	expectError(t, alice.take(), protocol.ActionStart, 491)

	carol := protocol.PresencePayload{Presentity: "pres:carol@sip.example.net", Status: "open", Note: "hi"}
	up.ev(0).Notify(carol) // ahead of the 200, kept
	up.ev(0).Accepted()
	expectAccepted(t, alice.take(), "c2", 300,
		protocol.PresencePayload{Presentity: "sip:carol@sip.example.net", Status: "open", Note: "hi"})
	up.ev(0).Notify(protocol.PresencePayload{Status: "closed"})
	expectNotify(t, alice.take(), "c2", closed("sip:carol@sip.example.net"))
	up.ev(0).Notify(protocol.PresencePayload{Status: "maybe"}) // invalid: dropped
	expectNothing(t, alice)

	w.unwatch(alice, "c2")
	if up.stopped() != 1 || w.h.Subscriptions() != 0 {
		t.Fatalf("stops %d, subscriptions %d", up.stopped(), w.h.Subscriptions())
	}
	up.ev(0).Notify(carol)
	up.ev(0).Terminated("late")
	expectNothing(t, alice)

	// Rejections and terminations.
	w.watch(alice, "c3", "tel:+15551234567", 0)
	up.ev(1).Rejected(404, "Not Found")
	expectError(t, alice.take(), protocol.ActionStart, 404)
	w.watch(alice, "c4", "sip:x@y", 0)
	up.ev(2).Rejected(500, "")
	expectError(t, alice.take(), protocol.ActionStart, 503)
	w.watch(alice, "c5", "sip:x@y", 0)
	up.ev(3).Terminated("gone")
	expectError(t, alice.take(), protocol.ActionStart, 480)
	w.watch(alice, "c6", "sip:x@y", 0)
	up.ev(4).Accepted()
	alice.take()
	up.ev(4).Terminated("deactivated")
	if f := alice.take(); len(f) != 1 || f[0].Header.Action != protocol.ActionShutdown || f[0].Control.SubsessionID != "c6" {
		t.Fatalf("got %s", dump(f))
	}
	if up.stopped() != 1 || w.h.Subscriptions() != 0 {
		t.Fatalf("stops %d, subscriptions %d", up.stopped(), w.h.Subscriptions())
	}

	// Web users stay web users even with an upstream.
	w.connect("bob@example.com")
	w.watch(alice, "c7", "sip:bob@example.com", 0)
	expectAccepted(t, alice.take(), "c7", 3600, open("sip:bob@example.com"))
	if len(up.reqs) != 5 {
		t.Fatalf("a web presentity went upstream")
	}
}

func TestUpstreamAnswersInline(t *testing.T) {
	up := &fakeUpstream{inline: func(ev UpstreamEvents) {
		ev.Accepted()
		ev.Notify(protocol.PresencePayload{Status: "open", Activity: "busy"})
	}}
	w := newWorld(t, Options{Upstream: up})
	alice := w.connect("alice@example.com")
	w.watch(alice, "c2", "sip:x@y", 0)
	f := alice.take()
	if len(f) != 2 || f[0].Header.ResponseCode != 200 {
		t.Fatalf("got %s", dump(f))
	}
	expectNotify(t, f[1:], "c2", protocol.PresencePayload{Presentity: "sip:x@y", Status: "open", Activity: "busy"})
	up.inline = func(ev UpstreamEvents) { ev.Rejected(403, "Forbidden") }
	w.watch(alice, "c3", "sip:x@y", 0)
	expectError(t, alice.take(), protocol.ActionStart, 403)
	if up.stopped() != 0 || w.h.Subscriptions() != 1 {
		t.Fatalf("stops %d, subscriptions %d", up.stopped(), w.h.Subscriptions())
	}
	w.end(alice)
	if up.stopped() != 1 {
		t.Fatalf("session end did not stop the upstream subscription")
	}
}

func TestUpstreamTimeoutsAndExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{}
		w := newWorld(t, Options{Upstream: up, Config: Config{PendingTimeout: 5}})
		alice := w.connect("alice@example.com")
		w.watch(alice, "c2", "sip:x@y", 0)
		time.Sleep(6 * time.Second)
		synctest.Wait()
		expectError(t, alice.take(), protocol.ActionStart, 408)
		if up.stopped() != 1 {
			t.Fatal("a timed-out subscription was not stopped")
		}
		up.ev(0).Accepted()
		expectNothing(t, alice)

		// Accepted: the web-side expiry applies, refreshes reset it.
		w.watch(alice, "c3", "sip:x@y", 100)
		up.ev(1).Accepted()
		if f := alice.take(); len(f) != 1 || f[0].Header.Expiry != 100 {
			t.Fatalf("got %s", dump(f))
		}
		time.Sleep(90 * time.Second)
		w.watch(alice, "c3", "sip:x@y", 100)
		if f := alice.take(); len(f) != 1 || f[0].Header.ResponseCode != 200 {
			t.Fatalf("refresh: %s", dump(f))
		}
		time.Sleep(90 * time.Second)
		synctest.Wait()
		expectNothing(t, alice)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if f := alice.take(); len(f) != 1 || f[0].Header.Action != protocol.ActionShutdown {
			t.Fatalf("at expiry: %s", dump(f))
		}
		if up.stopped() != 2 || w.h.Subscriptions() != 0 {
			t.Fatalf("stops %d, subscriptions %d", up.stopped(), w.h.Subscriptions())
		}
	})
}

// TestPublishesWebUsersUpstream: a web user's state goes upstream once
// she published, until her last session ends (closed: the Upstream
// withdraws it); a user who never published sends nothing, so her SIP
// phone's tuples are the only ones the presence server holds.
func TestPublishesWebUsersUpstream(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	b1 := w.connect("bob@example.com")
	b2 := w.connect("bob@example.com")
	if p := up.takePubs(); len(p) != 0 {
		t.Fatalf("published before bob asked: %+v", p)
	}
	w.publish(b2, `{"status":"open","activity":"on-the-phone"}`)
	w.end(b2)
	w.end(b1)
	// Back without publishing: nothing goes upstream.
	b3 := w.connect("bob@example.com")
	w.end(b3)
	got := up.takePubs()
	want := []protocol.PresencePayload{
		{Presentity: "bob@example.com", Status: "open", Activity: "on-the-phone"},
		open("bob@example.com"),
		withdrawn("bob@example.com"),
	}
	expectPubs(t, got, want)
}

func expectPubs(t *testing.T, got, want []protocol.PresencePayload) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("publications %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("publication %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestPublishWhenWatching: with presence.publish_when_watching a watch
// publishes the watcher's state (open) upstream, as a publish would; a
// publish of the state already shown still publishes it.
func TestPublishWhenWatching(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up, Config: Config{PublishWhenWatching: true}})
	a := w.connect("alice@example.com")
	b := w.connect("bob@example.com")
	w.watch(a, "c1", "bob@example.com", 0)
	w.publish(b, `{"status":"open"}`)
	w.end(a)
	w.end(b)
	got := up.takePubs()
	want := []protocol.PresencePayload{open("alice@example.com"), open("bob@example.com"), withdrawn("alice@example.com"), withdrawn("bob@example.com")}
	expectPubs(t, got, want)
}

// TestGuestsPublishNothing: a guest's session start and end, and what it
// publishes itself, send no PUBLISH upstream (a guest costs the SIP
// network nothing until it calls); its web watchers still hear it.
func TestGuestsPublishNothing(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	id := "guest-abc@guest.example.com"
	a := w.connect("alice@example.com")
	up.takePubs() // alice's own
	g := w.connect(id, guestEP)
	w.watch(a, "c1", id, 0)
	w.publish(g, `{"status":"open","activity":"busy"}`)
	w.end(g)
	if p := up.takePubs(); len(p) != 0 {
		t.Fatalf("guest presence published upstream: %+v", p)
	}
	var notifies int
	for _, f := range a.take() {
		if f.Header.Action == protocol.ActionNotify {
			notifies++
		}
	}
	if notifies != 3 { // open, busy, closed
		t.Fatalf("watcher got %d notifies, want 3", notifies)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	err := (Config{Expiry: 100, MinExpiry: 200, MaxWatchers: -1}).Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, key := range []string{"presence.min_expiry", "presence.max_watchers"} {
		if !contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestOfflinePresentityGoesUpstream: once a web user's last session
// ended, a new watch of her goes to the Upstream (where her phone may
// publish) even while earlier watchers keep her entity alive. The gateway
// reports an identity the SIP side serves as not Known.
func TestOfflinePresentityGoesUpstream(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	alice := w.connect("alice@example.com")
	carol := w.connect("carol@example.com")
	w.watch(alice, "c1", "sip:carol@example.com", 0)
	expectAccepted(t, alice.take(), "c1", 3600, open("sip:carol@example.com"))
	w.end(carol)
	w.dir.mu.Lock()
	w.dir.known["carol@example.com"] = false
	w.dir.mu.Unlock()
	alice.take() // carol closed
	dave := w.connect("dave@example.com")
	w.watch(dave, "c2", "sip:carol@example.com", 0)
	if len(up.reqs) != 1 || up.reqs[0].Presentity != "sip:carol@example.com" {
		t.Fatalf("upstream requests %+v, want the watch of offline carol", up.reqs)
	}
	if f := dave.take(); len(f) != 0 {
		t.Fatalf("the web side answered: %s", dump(f))
	}
	w.unwatch(alice, "c1")
	w.end(alice)
	w.end(dave)
}

// TestUpstreamExt: the extension headers the upstream made of its SIP
// messages (the to_web rules) ride on the frames: the start's 200 or
// error, and each notify, a kept one and a refresh's again.
func TestUpstreamExt(t *testing.T) {
	up := &fakeUpstream{}
	w := newWorld(t, Options{Upstream: up})
	alice := w.connect("alice@example.com")
	ext := func(v string) protocol.Ext {
		return protocol.Ext{Name: "x-carrier", Kind: protocol.ExtString, Value: v}
	}
	has := func(f *protocol.Frame, v string) bool {
		e, ok := f.Header.ExtValue("x-carrier")
		return ok && e.Value == v
	}
	w.watch(alice, "c2", "sip:carol@sip.example.net", 300)
	up.ev(0).Notify(protocol.PresencePayload{Status: "open"}, ext("n1"))
	up.ev(0).Accepted(ext("ok"))
	if f := alice.take(); len(f) != 2 || !has(f[0], "ok") || !has(f[1], "n1") {
		t.Fatalf("got %s", dump(f))
	}
	up.ev(0).Notify(protocol.PresencePayload{Status: "closed"}, ext("n2"))
	if f := alice.take(); len(f) != 1 || !has(f[0], "n2") {
		t.Fatalf("second notify %s", dump(f))
	}
	w.watch(alice, "c2", "sip:carol@sip.example.net", 300)
	if f := alice.take(); len(f) != 2 || !has(f[1], "n2") {
		t.Fatalf("refresh %s", dump(f))
	}
	w.watch(alice, "c3", "sip:x@y", 0)
	up.ev(1).Rejected(403, "Forbidden", ext("no"))
	if f := alice.take(); len(f) != 1 || f[0].Header.ErrorCode != 403 || !has(f[0], "no") {
		t.Fatalf("rejection %s", dump(f))
	}
}
