package notification

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/notification/mwi"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestSubscriptionMovesWithTheSession (issue 15): a session's answered
// subscription is told to Options.Local with the summary last notified;
// the node it moves to makes it again from that (Adopt) with a new
// Upstream subscription on the same subsession, silently: its 2xx is not
// told, nor its first NOTIFY when it says what the client saw, and the
// next summary is. The node it left ends its own upstream.
func TestSubscriptionMovesWithTheSession(t *testing.T) {
	up1, up2 := &fakeUpstream{}, &fakeUpstream{}
	var mu sync.Mutex
	var saved []Saved
	told := 0
	h1, bob := setup(t, Options{Upstream: up1, Local: func(session string, subs []Saved) {
		mu.Lock()
		defer mu.Unlock()
		if session != "SESS-bob" {
			t.Errorf("Local told of %s", session)
		}
		saved, told = subs, told+1
	}})
	subscribe(h1, bob, "c2", "sip:voicemail@example.com")
	if told != 0 {
		t.Fatalf("a pending subscription was told: %+v", saved)
	}
	up1.ev(0).Accepted()
	up1.ev(0).Notify(summary)
	bob.take()
	if len(saved) != 1 || saved[0].Subsession != "c2" || saved[0].Target != "sip:voicemail@example.com" ||
		len(saved[0].Ext) != 1 || string(saved[0].Last) != summaryJSON {
		t.Fatalf("saved %+v", saved)
	}
	// As the record carries it.
	data, err := json.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	var read []Saved
	if err := json.Unmarshal(data, &read); err != nil {
		t.Fatal(err)
	}

	h1.SessionMoved(bob)
	if s := up1.stopped(); len(s) != 1 || h1.Subscriptions() != 0 {
		t.Fatalf("old node: stops %v, %d subscriptions", s, h1.Subscriptions())
	}
	h2 := NewHandler(&Options{Upstream: up2})
	t.Cleanup(func() { h2.SessionEnded(bob) })
	h2.Adopt(bob, read)
	if len(up2.reqs) != 1 || up2.reqs[0].Mailbox != "sip:voicemail@example.com" || up2.reqs[0].Subscriber != "bob@example.com" ||
		len(up2.reqs[0].Ext) != 1 {
		t.Fatalf("new node's requests %+v", up2.reqs)
	}
	up2.ev(0).Accepted()
	up2.ev(0).Notify(summary)
	if f := bob.take(); len(f) != 0 {
		t.Fatalf("the client was told of the new subscription: %s", dump(f))
	}
	more := summary
	more.Classes = []mwi.Class{{Name: "voice-message", Counts: mwi.Counts{New: 3, Old: 8, UrgentOld: 2}}}
	up2.ev(0).Notify(more)
	f := bob.take()
	if len(f) != 1 || f[0].Header.Action != protocol.ActionNotify || f[0].Control.SubsessionID != "c2" ||
		string(f[0].Payload) != `{"messages_waiting":"yes","message_account":"sip:bob@example.com","voice-message":"3/8 (0/2)"}` {
		t.Fatalf("after the move: %s", dump(f))
	}
	// Events of the old subscription go nowhere.
	up1.ev(0).Notify(more)
	if f := bob.take(); len(f) != 0 {
		t.Fatalf("the old node notified: %s", dump(f))
	}
	// The client's unsubscribe reaches the new subscription.
	unsubscribe(h2, bob, "c2", "sip:voicemail@example.com")
	if s := up2.stopped(); len(s) != 1 || h2.Subscriptions() != 0 {
		t.Fatalf("new node after the unsubscribe: stops %v, %d subscriptions", s, h2.Subscriptions())
	}
}

// TestSummaryKeptBeforeTold: a summary is in what Options.Local is told
// before the notify that tells it is sent. The gateway writes a
// session's record ahead of its frames: told after, a record written in
// between (a kill right after) held the notify without its summary, and
// the process restarted on it told the client that summary again
// (gateway TestSubscriptionsAcrossRestart).
func TestSummaryKeptBeforeTold(t *testing.T) {
	up := &fakeUpstream{}
	var bob *fakeEP
	// told: the frames bob had been sent when Local first held the summary.
	told := -1
	h, b := setup(t, Options{Upstream: up, Local: func(_ string, subs []Saved) {
		if told < 0 && len(subs) == 1 && string(subs[0].Last) == summaryJSON {
			bob.mu.Lock()
			told = len(bob.frames)
			bob.mu.Unlock()
		}
	}})
	bob = b
	subscribe(h, bob, "c2", "sip:voicemail@example.com")
	up.ev(0).Accepted()
	bob.take()
	up.ev(0).Notify(summary)
	if told != 0 {
		t.Fatalf("Local held the summary told with %d frames sent, want 0 (before the notify)", told)
	}
	if f := bob.take(); len(f) != 1 || f[0].Header.Action != protocol.ActionNotify || string(f[0].Payload) != summaryJSON {
		t.Fatalf("got %s, want the notify", dump(f))
	}
}

// TestAdoptedNeverNotified: a subscription made again that had no
// summary yet tells the first one; one the new SUBSCRIBE is refused
// ends with a shutdown; a subsession already subscribed is left alone.
func TestAdoptedNeverNotified(t *testing.T) {
	up := &fakeUpstream{}
	h, bob := setup(t, Options{Upstream: up})
	subscribe(h, bob, "c1", "sip:voicemail@example.com")
	h.Adopt(bob, []Saved{{Subsession: "c1", Target: "sip:other@example.com"},
		{Subsession: "c2", Target: "sip:voicemail@example.com"}, {Subsession: "c3", Target: "sip:gone@example.com"}})
	if len(up.reqs) != 3 || h.Subscriptions() != 3 {
		t.Fatalf("requests %+v, %d subscriptions", up.reqs, h.Subscriptions())
	}
	up.ev(1).Accepted()
	up.ev(1).Notify(summary)
	if f := bob.take(); len(f) != 1 || f[0].Control.SubsessionID != "c2" || string(f[0].Payload) != summaryJSON {
		t.Fatalf("first summary: %s", dump(f))
	}
	up.ev(2).Rejected(404, "Not Found")
	if f := bob.take(); len(f) != 1 || f[0].Header.Action != protocol.ActionShutdown || f[0].Control.SubsessionID != "c3" {
		t.Fatalf("refused: %s", dump(f))
	}
}
