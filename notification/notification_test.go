package notification

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/notification/mwi"
	"github.com/jsonrtc/jsonrtc/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeEP struct {
	id, identity string

	mu     sync.Mutex
	seq    uint64
	in     uint64
	frames []*protocol.Frame
	dead   bool
	// subs, when set, is the identity's subscription budget: held of max.
	subs *[2]int
}

func (e *fakeEP) AcquireSubscription() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs == nil {
		return true
	}
	if e.subs[0] >= e.subs[1] {
		return false
	}
	e.subs[0]++
	return true
}

func (e *fakeEP) ReleaseSubscription() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs != nil {
		e.subs[0]--
	}
}

func (e *fakeEP) ID() string       { return e.id }
func (e *fakeEP) Identity() string { return e.identity }
func (e *fakeEP) Oracle() bool     { return true }

func (e *fakeEP) Send(f *protocol.Frame, self bool) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return 0, errors.New("ended")
	}
	e.seq++
	f.Control.Sequence = e.seq
	if self {
		f.Control.CorrelationID = "s" + strconv.FormatUint(e.seq, 10)
	}
	e.frames = append(e.frames, f)
	return e.seq, nil
}

func (e *fakeEP) take() []*protocol.Frame {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.frames
	e.frames = nil
	return f
}

// fakeUpstream records subscriptions; the test drives their events.
type fakeUpstream struct {
	mu     sync.Mutex
	reqs   []Request
	evs    []Events
	stops  []int // indexes of stopped subscriptions
	inline func(Events)
}

func (u *fakeUpstream) Subscribe(req Request, ev Events) func() {
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

func (u *fakeUpstream) ev(i int) Events {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.evs[i]
}

func (u *fakeUpstream) stopped() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.stops...)
}

func setup(t *testing.T, opts Options) (*Handler, *fakeEP) {
	t.Helper()
	h := NewHandler(&opts)
	bob := &fakeEP{id: "SESS-bob", identity: "bob@example.com"}
	t.Cleanup(func() {
		h.SessionEnded(bob)
		if n := h.Subscriptions(); n != 0 {
			t.Errorf("%d subscriptions left", n)
		}
	})
	return h, bob
}

// subscribe sends the frame wsc.js sends (section 9): no ack_sequence.
func subscribe(h *Handler, e *fakeEP, sub, target string) {
	e.in++
	h.HandleFrame(e, &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessageNotification,
			SessionID: e.id, SubsessionID: sub, Sequence: e.in, CorrelationID: sub, Version: "1.0"},
		Header: protocol.Header{Action: protocol.ActionStart, Initiator: e.identity, Target: target,
			Ext: []protocol.Ext{{Name: "x-ext", Kind: protocol.ExtString, Value: "1"}}},
		Payload: []byte(`{}`),
	})
}

func unsubscribe(h *Handler, e *fakeEP, sub, target string) {
	e.in++
	h.HandleFrame(e, &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageMessageNotification,
			SessionID: e.id, SubsessionID: sub, Sequence: e.in, CorrelationID: sub, Version: "1.0"},
		Header: protocol.Header{Action: protocol.ActionShutdown, Initiator: e.identity, Target: target},
	})
}

func dump(frames []*protocol.Frame) string {
	s := ""
	for _, f := range frames {
		s += "\n  " + string(f.Marshal())
	}
	return s
}

var summary = mwi.Summary{Waiting: true, Account: "sip:bob@example.com",
	Classes: []mwi.Class{{Name: "voice-message", Counts: mwi.Counts{New: 2, Old: 8, UrgentOld: 2}}}}

const summaryJSON = `{"messages_waiting":"yes","message_account":"sip:bob@example.com","voice-message":"2/8 (0/2)"}`

func TestNoVoicemailService(t *testing.T) {
	h, bob := setup(t, Options{})
	subscribe(h, bob, "c2", "sip:voicemail@example.com")
	f := bob.take()
	if len(f) != 1 || f[0].Control.Type != protocol.TypeError || f[0].Header.ErrorCode != 404 ||
		f[0].Header.Reason != "no voicemail service" || f[0].Control.Package != protocol.PackageMessageNotification ||
		f[0].Control.SubsessionID != "c2" || f[0].Control.CorrelationID != "c2" || f[0].Header.Action != protocol.ActionStart {
		t.Fatalf("got %s", dump(f))
	}
}

func TestSubscribeNotifyShutdown(t *testing.T) {
	up := &fakeUpstream{}
	h, bob := setup(t, Options{Upstream: up})
	subscribe(h, bob, "c2", "sip:voicemail@example.com")
	if f := bob.take(); len(f) != 0 {
		t.Fatalf("answered before the upstream did: %s", dump(f))
	}
	if r := up.reqs[0]; r.Subscriber != "bob@example.com" || r.Mailbox != "sip:voicemail@example.com" ||
		r.Expiry != time.Hour || len(r.Ext) != 1 {
		t.Fatalf("request %+v", r)
	}
	// A NOTIFY may overtake the 200 to SUBSCRIBE.
	up.ev(0).Notify(summary)
	up.ev(0).Accepted()
	f := bob.take()
	if len(f) != 2 {
		t.Fatalf("got %s", dump(f))
	}
	if r := f[0]; r.Control.Type != protocol.TypeResponse || r.Header.Action != protocol.ActionStart ||
		r.Header.ResponseCode != 200 || r.Header.Expiry != 3600 || r.Control.CorrelationID != "c2" || r.Control.SubsessionID != "c2" {
		t.Fatalf("response %s", dump(f[:1]))
	}
	if n := f[1]; n.Control.Type != protocol.TypeMessage || n.Header.Action != protocol.ActionNotify ||
		n.Control.SubsessionID != "c2" || string(n.Payload) != summaryJSON ||
		n.Header.Initiator != "sip:voicemail@example.com" || n.Header.Target != "bob@example.com" {
		t.Fatalf("notify %s", dump(f[1:]))
	}
	up.ev(0).Notify(mwi.Summary{})
	if f := bob.take(); len(f) != 1 || string(f[0].Payload) != `{"messages_waiting":"no"}` {
		t.Fatalf("second notify %s", dump(f))
	}
	// wsc.js re-subscribes on the same subsession: 200 again, one subscription.
	subscribe(h, bob, "c2", "sip:voicemail@example.com")
	if f := bob.take(); len(f) != 2 || f[0].Header.ResponseCode != 200 || f[1].Header.Action != protocol.ActionNotify {
		t.Fatalf("refresh %s", dump(f))
	}
	if h.Subscriptions() != 1 || len(up.reqs) != 1 {
		t.Fatalf("refresh made a new subscription")
	}
	// The client's shutdown gets no answer and stops the upstream side.
	unsubscribe(h, bob, "c2", "sip:voicemail@example.com")
	if f := bob.take(); len(f) != 0 {
		t.Fatalf("shutdown answered: %s", dump(f))
	}
	if s := up.stopped(); len(s) != 1 {
		t.Fatalf("stops %v", s)
	}
	up.ev(0).Notify(summary) // late: ignored
	if f := bob.take(); len(f) != 0 {
		t.Fatalf("notify after shutdown: %s", dump(f))
	}
}

func TestUpstreamEndsIt(t *testing.T) {
	up := &fakeUpstream{}
	h, bob := setup(t, Options{Upstream: up})
	subscribe(h, bob, "c2", "sip:vm@example.com")
	up.ev(0).Rejected(500, "Server Internal Error")
	f := bob.take()
	if len(f) != 1 || f[0].Control.Type != protocol.TypeError || f[0].Header.ErrorCode != 503 {
		t.Fatalf("a 500 must not reach the SDK: %s", dump(f))
	}
	subscribe(h, bob, "c3", "sip:vm@example.com")
	up.ev(1).Rejected(403, "Forbidden")
	if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != 403 || f[0].Control.CorrelationID != "c3" {
		t.Fatalf("got %s", dump(f))
	}
	subscribe(h, bob, "c4", "sip:vm@example.com")
	up.ev(2).Accepted()
	bob.take()
	up.ev(2).Terminated("deactivated")
	f = bob.take()
	if len(f) != 1 || f[0].Control.Type != protocol.TypeMessage || f[0].Header.Action != protocol.ActionShutdown ||
		f[0].Control.SubsessionID != "c4" {
		t.Fatalf("got %s", dump(f))
	}
	if h.Subscriptions() != 0 || len(up.stopped()) != 0 {
		t.Fatalf("subscriptions %d, stops %v", h.Subscriptions(), up.stopped())
	}
}

// An upstream that answers from inside Subscribe.
func TestInlineAnswer(t *testing.T) {
	up := &fakeUpstream{inline: func(ev Events) { ev.Accepted(); ev.Notify(summary) }}
	h, bob := setup(t, Options{Upstream: up})
	subscribe(h, bob, "c2", "sip:vm@example.com")
	if f := bob.take(); len(f) != 2 || f[0].Header.ResponseCode != 200 || string(f[1].Payload) != summaryJSON {
		t.Fatalf("got %s", dump(f))
	}
	up.inline = func(ev Events) { ev.Rejected(404, "Not Found") }
	subscribe(h, bob, "c3", "sip:nobody@example.com")
	if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != 404 {
		t.Fatalf("got %s", dump(f))
	}
	if h.Subscriptions() != 1 || len(up.stopped()) != 0 {
		t.Fatalf("subscriptions %d, stops %v", h.Subscriptions(), up.stopped())
	}
}

func TestPendingTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{}
		h, bob := setup(t, Options{Upstream: up, Config: Config{PendingTimeout: 10}})
		subscribe(h, bob, "c2", "sip:vm@example.com")
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != 408 {
			t.Fatalf("got %s", dump(f))
		}
		if s := up.stopped(); len(s) != 1 {
			t.Fatalf("stops %v", s)
		}
		up.ev(0).Accepted() // too late
		if f := bob.take(); len(f) != 0 {
			t.Fatalf("got %s", dump(f))
		}
		// An accepted subscription does not expire on the web side:
		// wsc.js never refreshes.
		subscribe(h, bob, "c3", "sip:vm@example.com")
		up.ev(1).Accepted()
		bob.take()
		time.Sleep(48 * time.Hour)
		synctest.Wait()
		if f := bob.take(); len(f) != 0 || h.Subscriptions() != 1 {
			t.Fatalf("got %s", dump(f))
		}
	})
}

func TestSessionEndedStopsUpstream(t *testing.T) {
	up := &fakeUpstream{}
	h, bob := setup(t, Options{Upstream: up, Config: Config{MaxSubscriptions: 2}})
	subscribe(h, bob, "c2", "sip:vm@example.com")
	subscribe(h, bob, "c3", "sip:fax@example.com")
	subscribe(h, bob, "c4", "sip:pager@example.com")
	if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != 503 {
		t.Fatalf("over the bound: %s", dump(f))
	}
	up.ev(0).Accepted()
	bob.take()
	bob.dead = true
	h.SessionEnded(bob)
	if s := up.stopped(); len(s) != 2 || h.Subscriptions() != 0 {
		t.Fatalf("stops %v, subscriptions %d", s, h.Subscriptions())
	}
	up.ev(0).Notify(summary)
	up.ev(1).Accepted()
}

func TestBadStart(t *testing.T) {
	h, bob := setup(t, Options{Upstream: &fakeUpstream{}})
	bob.in++
	h.HandleFrame(bob, &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessageNotification, SubsessionID: "c9", Sequence: bob.in},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "sip:vm@example.com"},
	})
	if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != 403 || f[0].Control.CorrelationID != "c"+strconv.FormatUint(bob.in, 10) {
		t.Fatalf("got %s", dump(f))
	}
	subscribe(h, bob, "c10", "")
	if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != 400 {
		t.Fatalf("got %s", dump(f))
	}
}

// TestSubscriptionQuota: voicemail subscriptions come from the same
// budget as presence ones (the session's subscription quota): past it a
// start gets 503 "subscription limit reached" and reaches no upstream;
// an unsubscribe, the upstream ending one, a pending timeout and the
// session's end give shares back.
func TestSubscriptionQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{}
		h, bob := setup(t, Options{Upstream: up, Config: Config{PendingTimeout: 10}})
		budget := [2]int{1, 3} // one held already, by a presence watch
		bob.subs = &budget
		subscribe(h, bob, "c2", "sip:vm@example.com")
		subscribe(h, bob, "c3", "sip:vm2@example.com")
		up.ev(0).Accepted()
		up.ev(1).Accepted()
		bob.take()
		subscribe(h, bob, "c4", "sip:vm3@example.com")
		f := bob.take()
		if len(f) != 1 || f[0].Header.ErrorCode != 503 || f[0].Header.Reason != "subscription limit reached" || len(up.reqs) != 2 {
			t.Fatalf("over the budget: %s, %d upstream requests", dump(f), len(up.reqs))
		}
		unsubscribe(h, bob, "c2", "sip:vm@example.com")
		up.ev(1).Terminated("deactivated")
		if budget[0] != 1 {
			t.Fatalf("held %d after an unsubscribe and a termination", budget[0])
		}
		subscribe(h, bob, "c5", "sip:vm@example.com") // never answered
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if budget[0] != 1 {
			t.Fatalf("held %d after a pending timeout", budget[0])
		}
		subscribe(h, bob, "c6", "sip:vm@example.com")
		up.ev(3).Accepted()
		h.SessionEnded(bob)
		if budget[0] != 1 || h.Subscriptions() != 0 {
			t.Fatalf("held %d, %d subscriptions after the session ended", budget[0], h.Subscriptions())
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{Expiry: -1, PendingTimeout: -2}).Validate(); err == nil {
		t.Fatal("negative values accepted")
	}
}

// TestUpstreamExt: the extension headers the upstream made of its SIP
// messages (the to_web rules) ride on the frames: the start's 200 or
// error, and each notify, a kept one and a refresh's again.
func TestUpstreamExt(t *testing.T) {
	up := &fakeUpstream{}
	h, bob := setup(t, Options{Upstream: up})
	ext := func(v string) protocol.Ext {
		return protocol.Ext{Name: "x-carrier", Kind: protocol.ExtString, Value: v}
	}
	has := func(f *protocol.Frame, v string) bool {
		e, ok := f.Header.ExtValue("x-carrier")
		return ok && e.Value == v
	}
	subscribe(h, bob, "c2", "sip:voicemail@example.com")
	up.ev(0).Notify(summary, ext("n1"))
	up.ev(0).Accepted(ext("ok"))
	if f := bob.take(); len(f) != 2 || !has(f[0], "ok") || !has(f[1], "n1") {
		t.Fatalf("got %s", dump(f))
	}
	up.ev(0).Notify(mwi.Summary{}, ext("n2"))
	if f := bob.take(); len(f) != 1 || !has(f[0], "n2") {
		t.Fatalf("second notify %s", dump(f))
	}
	subscribe(h, bob, "c2", "sip:voicemail@example.com")
	if f := bob.take(); len(f) != 2 || !has(f[1], "n2") {
		t.Fatalf("refresh %s", dump(f))
	}
	subscribe(h, bob, "c3", "sip:voicemail@example.com")
	up.ev(1).Rejected(403, "Forbidden", ext("no"))
	if f := bob.take(); len(f) != 1 || f[0].Header.ErrorCode != 403 || !has(f[0], "no") {
		t.Fatalf("rejection %s", dump(f))
	}
}
