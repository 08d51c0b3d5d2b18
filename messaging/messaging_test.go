package messaging

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

func TestRelayReachesEveryOtherSession(t *testing.T) {
	h, d := newHandler(t, Options{})
	a1 := d.add("a1", "alice@x")
	a2 := d.add("a2", "alice@x")
	b1 := d.add("b1", "bob@x")
	b2 := d.add("b2", "bob@x")

	f := sendFrame(5, "sip:bob@x", `{"content_type":"text/plain","body":"hi"}`)
	f.Header.Ext = []protocol.Ext{{Name: "x-tag", Kind: protocol.ExtString, Value: "v"}}
	h.HandleFrame(a1, f)
	var got []*protocol.Frame
	for _, b := range []*fakeEP{b1, b2} {
		r := b.only(t)
		if r.Control.Type != protocol.TypeRequest || r.Control.Package != protocol.PackageMessaging ||
			r.Header.Action != protocol.ActionSend || r.Header.Initiator != "alice@x" || r.Header.Target != "sip:bob@x" ||
			string(r.Payload) != string(f.Payload) || len(r.Header.Ext) != 1 || r.Header.Ext[0].Value != "v" ||
			r.Control.CorrelationID != "s1" {
			t.Fatalf("%s got %+v %+v %s", b.id, r.Control, r.Header, r.Payload)
		}
		got = append(got, r)
	}
	a1.none(t)
	a2.none(t)
	if n := h.Pending(); n != 2 {
		t.Fatalf("Pending = %d, want 2", n)
	}

	// The first answer is the report; the other copy's changes nothing.
	h.HandleFrame(b2, answerFrame(got[1], 0, ""))
	rep := a1.only(t)
	wantReport(t, rep, protocol.TypeResponse, 5, "sip:bob@x", protocol.CodeOK, "OK")
	if rep.Header.Initiator != "alice@x" {
		t.Fatalf("report initiator %q", rep.Header.Initiator)
	}
	if n := h.Pending(); n != 1 {
		t.Fatalf("Pending = %d, want 1", n)
	}
	h.HandleFrame(b1, answerFrame(got[0], 486, ""))
	a1.none(t)
	idle(t, h)
}

// The sender's other sessions get its messages; the sending one does not.
func TestRelayToOwnIdentity(t *testing.T) {
	h, d := newHandler(t, Options{})
	a1 := d.add("a1", "alice@x")
	a2 := d.add("a2", "alice@x")
	h.HandleFrame(a1, sendFrame(1, "alice@x", `{"body":"note to self"}`))
	r := a2.only(t)
	a1.none(t)
	h.HandleFrame(a2, answerFrame(r, 202, "Accepted"))
	wantReport(t, a1.only(t), protocol.TypeResponse, 1, "alice@x", 202, "Accepted")
	idle(t, h)
}

func TestReportCarriesTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		code       int
		reason     string
		typ        protocol.Type
		want       int
		wantReason string
	}{
		{0, "", protocol.TypeResponse, 200, "OK"},
		{200, "Fine", protocol.TypeResponse, 200, "Fine"},
		{202, "", protocol.TypeResponse, 202, "Accepted"},
		{486, "", protocol.TypeError, 486, "Busy Here"},
		{603, "no thanks", protocol.TypeError, 603, "no thanks"},
	} {
		t.Run(fmt.Sprint(tc.code, tc.reason), func(t *testing.T) {
			h, d := newHandler(t, Options{})
			a := d.add("a", "alice@x")
			b := d.add("b", "bob@x")
			h.HandleFrame(a, sendFrame(3, "bob@x", `{"body":"x"}`))
			h.HandleFrame(b, answerFrame(b.only(t), tc.code, tc.reason))
			wantReport(t, a.only(t), tc.typ, 3, "bob@x", tc.want, tc.wantReason)
			idle(t, h)
		})
	}
}

func TestNoSessionIsNotFoundOrOffline(t *testing.T) {
	h, d := newHandler(t, Options{})
	a := d.add("a", "alice@x")
	d.known["carol@x"] = true // has had a session

	h.HandleFrame(a, sendFrame(1, "dave@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 1, "dave@x", protocol.CodeNotFound, "Not Found")
	h.HandleFrame(a, sendFrame(2, "sip:carol@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 2, "sip:carol@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	// Alone on its identity, the sender has no one to send to.
	h.HandleFrame(a, sendFrame(3, "alice@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 3, "alice@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	idle(t, h)
}

// A bad payload gets the error frame it got when the handler decoded the
// payload with encoding/json, word for word.
func TestBadPayloadGetsTheDecodeError(t *testing.T) {
	for _, payload := range []string{
		`{"body":1}`,
		`{"body":{"a":1}}`,
		`{"Body":true}`,
		`{"content_type":["text/plain"],"body":"x"}`,
		`{"body":"x","body":[]}`,
		`[]`,
		`"x"`,
		`{"body":"x"`,
	} {
		t.Run(payload, func(t *testing.T) {
			up := &fakeUpstream{routes: true}
			h, d := newHandler(t, Options{Upstream: up})
			a := d.add("a", "alice@x")
			b := d.add("b", "bob@x")
			var p protocol.MessagePayload
			want := protocol.DecodePayload(json.RawMessage(payload), &p).(*protocol.Error).Reason
			for i, target := range []string{"bob@x", "sip:pstn@y"} {
				f := sendFrame(uint64(7+i), target, payload)
				h.HandleFrame(a, f)
				got := a.only(t)
				wantReport(t, got, protocol.TypeError, uint64(7+i), target, protocol.CodeBadRequest, want)
				if got.Header.Initiator != "alice@x" {
					t.Fatalf("initiator %q", got.Header.Initiator)
				}
			}
			b.none(t)
			if len(up.sent) != 0 {
				t.Fatalf("upstream was sent %v", up.sent)
			}
			idle(t, h)
		})
	}
}

func TestGoodPayloadsRelay(t *testing.T) {
	for _, payload := range []string{``, `{}`, `{"body":null}`, `{"body":"x","extra":[1,{"y":2}]}`, `{"BODY":"x"}`} {
		h, d := newHandler(t, Options{})
		a := d.add("a", "alice@x")
		b := d.add("b", "bob@x")
		h.HandleFrame(a, sendFrame(1, "bob@x", payload))
		if r := b.only(t); string(r.Payload) != payload {
			t.Fatalf("payload %q relayed as %q", payload, r.Payload)
		}
		a.none(t)
	}
}

func TestReportTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _, a, b1, b2 := aliceAndBob(t, Options{Timeout: 10 * time.Second})
		h.HandleFrame(a, sendFrame(4, "bob@x", `{"body":"x"}`))
		r := b1.only(t)
		b2.only(t)
		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait()
		a.none(t)
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		wantReport(t, a.only(t), protocol.TypeError, 4, "bob@x", protocol.CodeRequestTimeout, "no delivery report")
		idle(t, h)
		// A late answer changes nothing.
		h.HandleFrame(b1, answerFrame(r, 200, ""))
		a.none(t)
		idle(t, h)
	})
}

// A copy its session never answers is dropped at the report timeout,
// though another copy answered: it no longer holds a place in the bound
// until its session ends.
func TestUnansweredCopyDroppedAtTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _, a, b1, b2 := aliceAndBob(t, Options{Timeout: 10 * time.Second})
		h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
		h.HandleFrame(b1, answerFrame(b1.only(t), 200, ""))
		a.only(t)
		r := b2.only(t)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		a.none(t)
		idle(t, h)
		h.HandleFrame(b2, answerFrame(r, 200, ""))
		a.none(t)
		idle(t, h)
	})
}

func TestAnsweredMessageDoesNotTimeOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d := newHandler(t, Options{}) // the default timeout, 90 s
		a := d.add("a", "alice@x")
		b := d.add("b", "bob@x")
		h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
		r := b.only(t)
		time.Sleep(89 * time.Second)
		synctest.Wait()
		a.none(t)
		h.HandleFrame(b, answerFrame(r, 200, ""))
		a.only(t)
		time.Sleep(time.Hour)
		synctest.Wait()
		a.none(t)
		idle(t, h)
	})
}

func TestMaxPending(t *testing.T) {
	h, d, a, b1, b2 := aliceAndBob(t, Options{MaxPending: 3})
	c := d.add("c", "carol@x")

	h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`)) // 2 deliveries
	r1 := b1.only(t)
	r2 := b2.only(t)
	h.HandleFrame(a, sendFrame(2, "bob@x", `{"body":"x"}`)) // 2 more: over
	wantReport(t, a.only(t), protocol.TypeError, 2, "bob@x", protocol.CodeServiceUnavailable, "too many messages in flight")
	b1.none(t)
	b2.none(t)
	h.HandleFrame(a, sendFrame(3, "carol@x", `{"body":"x"}`)) // 1 more fits
	rc := c.only(t)
	h.HandleFrame(a, sendFrame(4, "carol@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 4, "carol@x", protocol.CodeServiceUnavailable, "too many messages in flight")

	h.HandleFrame(b1, answerFrame(r1, 200, ""))
	a.only(t)
	h.HandleFrame(a, sendFrame(5, "bob@x", `{"body":"x"}`)) // b2's copy still counts
	wantReport(t, a.only(t), protocol.TypeError, 5, "bob@x", protocol.CodeServiceUnavailable, "too many messages in flight")
	h.HandleFrame(b2, answerFrame(r2, 200, ""))
	a.none(t)
	h.HandleFrame(a, sendFrame(5, "bob@x", `{"body":"x"}`)) // room again
	b1.only(t)
	b2.only(t)
	a.none(t)
	h.HandleFrame(c, answerFrame(rc, 200, ""))
	a.only(t)
	h.SessionEnded(b1)
	h.SessionEnded(b2)
	wantReport(t, a.only(t), protocol.TypeError, 5, "bob@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	idle(t, h)
}

// The bound holds over all senders at once.
func TestMaxPendingUnderConcurrency(t *testing.T) {
	const max, senders = 10, 40
	h, d := newHandler(t, Options{MaxPending: max})
	var from, to []*fakeEP
	for i := range senders {
		from = append(from, d.add(fmt.Sprint("a", i), fmt.Sprint("a", i, "@x")))
		to = append(to, d.add(fmt.Sprint("b", i), fmt.Sprint("b", i, "@x")))
	}
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() { h.HandleFrame(from[i], sendFrame(1, to[i].identity, `{"body":"x"}`)) })
	}
	wg.Wait()
	relayed, refused := 0, 0
	for i := range senders {
		relayed += len(to[i].frames())
		refused += len(from[i].frames())
	}
	if relayed != max || refused != senders-max || h.Pending() != max {
		t.Fatalf("relayed %d, refused %d, pending %d; want %d, %d, %d", relayed, refused, h.Pending(), max, senders-max, max)
	}
	for i := range senders {
		h.SessionEnded(to[i])
	}
	idle(t, h)
}

func TestSendFailures(t *testing.T) {
	h, _, a, b1, b2 := aliceAndBob(t, Options{})
	b1.fail = true

	// One copy out: the report waits for it.
	h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
	r := b2.only(t)
	a.none(t)
	if n := h.Pending(); n != 1 {
		t.Fatalf("Pending = %d, want 1", n)
	}
	h.HandleFrame(b2, answerFrame(r, 200, ""))
	wantReport(t, a.only(t), protocol.TypeResponse, 1, "bob@x", 200, "OK")

	// No copy out: 480 at once.
	b2.fail = true
	h.HandleFrame(a, sendFrame(2, "bob@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 2, "bob@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	idle(t, h)
}

func TestSessionEndAnswersPending(t *testing.T) {
	h, _, a, b1, b2 := aliceAndBob(t, Options{})
	h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
	h.HandleFrame(a, sendFrame(2, "bob@x", `{"body":"y"}`))
	h.SessionEnded(b1)
	a.none(t) // b2 may still answer
	h.SessionEnded(b1)
	h.SessionEnded(a) // the sender's end drops nothing it sent
	if n := h.Pending(); n != 2 {
		t.Fatalf("Pending = %d, want 2", n)
	}
	h.SessionEnded(b2)
	fs := a.frames()
	if len(fs) != 2 {
		t.Fatalf("sender got %d frames, want 2", len(fs))
	}
	for _, f := range fs {
		seq := uint64(1)
		if f.Control.CorrelationID == "c2" {
			seq = 2
		}
		wantReport(t, f, protocol.TypeError, seq, "bob@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	}
	idle(t, h)
}

// Unknown answers, and frames that are no answer, change nothing.
func TestStrayFrames(t *testing.T) {
	h, d := newHandler(t, Options{})
	a := d.add("a", "alice@x")
	b := d.add("b", "bob@x")
	h.HandleFrame(b, &protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, CorrelationID: "s9"}})
	h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
	r := b.only(t)
	for _, f := range []*protocol.Frame{
		{Control: protocol.Control{Type: protocol.TypeResponse, CorrelationID: "s9"}},
		{Control: protocol.Control{Type: protocol.TypeMessage, CorrelationID: r.Control.CorrelationID}},
		{Control: protocol.Control{Type: protocol.TypeAcknowledgement, CorrelationID: r.Control.CorrelationID}},
	} {
		h.HandleFrame(b, f)
	}
	h.HandleFrame(a, answerFrame(r, 200, "")) // from the wrong session
	a.none(t)
	h.HandleFrame(b, answerFrame(r, 200, ""))
	a.only(t)
	idle(t, h)
}

// An answer can overtake its delivery's record: the target's client may
// answer before Send returns to the relay. No lock may be held across
// that Send (the relay would deadlock here) and the answer must count.
func TestAnswerBeforeSendReturns(t *testing.T) {
	h, d := newHandler(t, Options{})
	a := d.add("a", "alice@x")
	b := d.add("b", "bob@x")
	b.onSend = func(f *protocol.Frame) {
		// Noise first: answers to nothing, at most one of which is kept.
		for i := range 5 {
			h.HandleFrame(b, answerFrame(&protocol.Frame{Control: protocol.Control{CorrelationID: fmt.Sprint("s", 100+i)}}, 200, ""))
		}
		if n := earlyKept(h, b.id); n != 1 {
			t.Errorf("%d early answers kept, want 1", n)
		}
	}
	h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
	r := b.only(t)
	a.none(t)
	h.HandleFrame(b, answerFrame(r, 200, ""))
	a.only(t)
	idle(t, h)

	b.onSend = func(f *protocol.Frame) { h.HandleFrame(b, answerFrame(f, 486, "")) }
	h.HandleFrame(a, sendFrame(2, "bob@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 2, "bob@x", 486, "Busy Here")
	idle(t, h)
}

// A session that ends while a relay is inside Send to it cannot answer
// what it was sent.
func TestSessionEndsDuringSend(t *testing.T) {
	h, d := newHandler(t, Options{})
	a := d.add("a", "alice@x")
	b := d.add("b", "bob@x")
	b.onSend = func(*protocol.Frame) { h.SessionEnded(b) }
	h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
	b.only(t)
	wantReport(t, a.only(t), protocol.TypeError, 1, "bob@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	idle(t, h)
}

// A report reached while the relay is still sending (here: the timeout
// fires between two copies) leaves nothing behind from the later copies.
func TestSettledDuringRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _, a, b1, b2 := aliceAndBob(t, Options{Timeout: time.Second})
		b1.onSend = func(*protocol.Frame) {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		h.HandleFrame(a, sendFrame(1, "bob@x", `{"body":"x"}`))
		wantReport(t, a.only(t), protocol.TypeError, 1, "bob@x", protocol.CodeRequestTimeout, "no delivery report")
		b1.only(t)
		b2.only(t)
		idle(t, h)
	})
}

func TestUpstream(t *testing.T) {
	for _, tc := range []struct {
		code, want int
		reason     string
		typ        protocol.Type
		wantReason string
	}{
		{200, 200, "OK", protocol.TypeResponse, "OK"},
		{202, 202, "", protocol.TypeResponse, "Accepted"},
		{486, 486, "Busy", protocol.TypeError, "Busy"},
		{404, 404, "", protocol.TypeError, "Not Found"},
		{500, 503, "Server Error", protocol.TypeError, "Server Error"},
		{180, 503, "odd", protocol.TypeError, "odd"},
		{700, 503, "", protocol.TypeError, "Service Unavailable"},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			up := &fakeUpstream{routes: true}
			h, d := newHandler(t, Options{Upstream: up})
			a := d.add("a", "alice@x")
			f := sendFrame(2, "sip:+123@pstn", `{"content_type":"text/plain","body":"hello"}`)
			f.Header.Ext = []protocol.Ext{{Name: "x-a", Kind: protocol.ExtNumber, Value: "1"}}
			h.HandleFrame(a, f)
			a.none(t)
			if len(up.sent) != 1 {
				t.Fatalf("upstream sent %d", len(up.sent))
			}
			m := up.sent[0]
			if m.From != "alice@x" || m.To != "sip:+123@pstn" || m.Payload.ContentType != "text/plain" ||
				m.Payload.Body != "hello" || len(m.Ext) != 1 || m.Ext[0].Name != "x-a" {
				t.Fatalf("upstream got %+v", m)
			}
			if n := h.Pending(); n != 1 {
				t.Fatalf("Pending = %d, want 1", n)
			}
			up.reports[0](tc.code, tc.reason, nil)
			wantReport(t, a.only(t), tc.typ, 2, "sip:+123@pstn", tc.want, tc.wantReason)
			up.reports[0](200, "again", nil)
			a.none(t)
			idle(t, h)
		})
	}
}

func TestUpstreamRefusesOrIsFull(t *testing.T) {
	up := &fakeUpstream{routes: true, err: errors.New("no route to the upstream")}
	h, d := newHandler(t, Options{Upstream: up, MaxPending: 1})
	a := d.add("a", "alice@x")
	h.HandleFrame(a, sendFrame(1, "sip:x@pstn", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 1, "sip:x@pstn", protocol.CodeBadRequest, "no route to the upstream")
	up.reports[0](200, "", nil) // the upstream broke its word: still one report, no count under zero
	a.none(t)
	idle(t, h)

	up.err = nil
	h.HandleFrame(a, sendFrame(2, "sip:x@pstn", `{"body":"x"}`))
	h.HandleFrame(a, sendFrame(3, "sip:x@pstn", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 3, "sip:x@pstn", protocol.CodeServiceUnavailable, "too many messages in flight")
	if len(up.sent) != 2 {
		t.Fatalf("upstream sent %d, want 2", len(up.sent))
	}
	up.reports[1](200, "", nil)
	a.only(t)
	idle(t, h)
}

// Only targets that are no web identity go upstream, and only those the
// upstream serves.
func TestUpstreamRouting(t *testing.T) {
	up := &fakeUpstream{routes: false}
	h, d := newHandler(t, Options{Upstream: up})
	a := d.add("a", "alice@x")
	d.known["carol@x"] = true
	h.HandleFrame(a, sendFrame(1, "sip:x@pstn", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 1, "sip:x@pstn", protocol.CodeNotFound, "Not Found")
	up.routes = true
	h.HandleFrame(a, sendFrame(2, "sip:carol@x", `{"body":"x"}`))
	wantReport(t, a.only(t), protocol.TypeError, 2, "sip:carol@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	if len(up.sent) != 0 {
		t.Fatalf("upstream was sent %v", up.sent)
	}
	idle(t, h)
}

type answers struct {
	mu  sync.Mutex
	got []string
}

func (a *answers) fn(code int, reason string, _ []protocol.Ext) {
	a.mu.Lock()
	a.got = append(a.got, fmt.Sprint(code, " ", reason))
	a.mu.Unlock()
}

func (a *answers) want(t *testing.T, want ...string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if fmt.Sprint(a.got) != fmt.Sprint(want) {
		t.Fatalf("answers %q, want %q", a.got, want)
	}
	a.got = nil
}

func TestDeliver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d := newHandler(t, Options{Timeout: 5 * time.Second, MaxPending: 2})
		b1 := d.add("b1", "bob@x")
		b2 := d.add("b2", "bob@x")
		var ans answers
		p := protocol.MessagePayload{ContentType: "text/plain", Body: "from SIP"}

		h.Deliver("sip:+1@pstn", "sip:bob@x", p, ans.fn)
		ans.want(t)
		r := b1.only(t)
		r2 := b2.only(t)
		if r.Header.Initiator != "sip:+1@pstn" || r.Header.Target != "bob@x" ||
			string(r.Payload) != `{"content_type":"text/plain","body":"from SIP"}` {
			t.Fatalf("delivered %+v %s", r.Header, r.Payload)
		}
		h.HandleFrame(b1, answerFrame(r, 486, ""))
		ans.want(t, "486 Busy Here")
		h.HandleFrame(b2, answerFrame(r2, 200, ""))
		ans.want(t)
		idle(t, h)

		h.Deliver("sip:+1@pstn", "bob@x", p, ans.fn)
		r = b2.only(t)
		r1 := b1.only(t)
		h.Deliver("sip:+1@pstn", "bob@x", p, ans.fn) // two more: over the bound
		ans.want(t, "503 too many messages in flight")
		h.HandleFrame(b2, answerFrame(r, 0, ""))
		ans.want(t, "200 OK")
		h.HandleFrame(b1, answerFrame(r1, 200, ""))
		ans.want(t)

		h.Deliver("sip:+1@pstn", "bob@x", p, ans.fn)
		b1.only(t)
		b2.only(t)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		ans.want(t, "408 no delivery report")

		b1.fail, b2.fail = true, true
		h.Deliver("sip:+1@pstn", "bob@x", p, ans.fn)
		ans.want(t, "480 Temporarily Unavailable")
		d.known["carol@x"] = true
		h.Deliver("sip:+1@pstn", "sip:carol@x", p, ans.fn)
		ans.want(t, "480 Temporarily Unavailable")
		h.Deliver("sip:+1@pstn", "dave@x", p, ans.fn)
		ans.want(t, "404 Not Found")
		idle(t, h)
	})
}

func TestWebID(t *testing.T) {
	for in, want := range map[string]string{
		"sip:bob@x":     "bob@x",
		"SIPS:bob@x":    "bob@x",
		"bob@x":         "bob@x",
		"tel:+123":      "tel:+123",
		"bob@x:5060":    "bob@x:5060",
		"sip:bob@x:506": "bob@x:506",
	} {
		if got := webID(in); got != want {
			t.Errorf("webID(%q) = %q, want %q", in, got, want)
		}
	}
}

// Messages from one session to another arrive in the order they were
// sent, while other senders relay to the same sessions, answers overtake
// their records and a session of the target ends. Run it with -race.
func TestOrderPerPairUnderConcurrency(t *testing.T) {
	const senders, each = 8, 300
	h, d := newHandler(t, Options{})
	var targets []*fakeEP
	var answerers sync.WaitGroup
	var queues []chan *protocol.Frame
	for i := range 3 {
		b := d.add(fmt.Sprint("b", i), "bob@x")
		q := make(chan *protocol.Frame, senders*each)
		b.onSend = func(f *protocol.Frame) {
			if f.Control.Sequence%3 == 0 {
				h.HandleFrame(b, answerFrame(f, 200, "")) // before Send returns
				return
			}
			q <- f
		}
		answerers.Go(func() {
			for f := range q {
				h.HandleFrame(b, answerFrame(f, 200, ""))
			}
		})
		targets = append(targets, b)
		queues = append(queues, q)
	}
	var from []*fakeEP
	for i := range senders {
		from = append(from, d.add(fmt.Sprint("a", i), fmt.Sprint("a", i, "@x")))
	}
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for n := range each {
				h.HandleFrame(from[i], sendFrame(uint64(n+1), "bob@x", fmt.Sprintf(`{"body":"%d"}`, n)))
			}
		})
	}
	wg.Go(func() {
		gone := targets[2]
		gone.mu.Lock()
		gone.fail = true
		gone.mu.Unlock()
		h.SessionEnded(gone)
	})
	wg.Wait()
	for _, q := range queues {
		close(q)
	}
	answerers.Wait()

	for _, b := range targets {
		next := map[string]int{}
		for _, f := range b.frames() {
			var p protocol.MessagePayload
			if err := json.Unmarshal(f.Payload, &p); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint(next[f.Header.Initiator]); p.Body != want {
				t.Fatalf("%s got message %s from %s, want %s", b.id, p.Body, f.Header.Initiator, want)
			}
			next[f.Header.Initiator]++
		}
	}
	for _, a := range from {
		fs := a.frames()
		if len(fs) != each {
			t.Fatalf("%s got %d reports, want %d", a.id, len(fs), each)
		}
		for _, f := range fs {
			if f.Control.Type != protocol.TypeResponse || f.Header.ResponseCode != 200 {
				t.Fatalf("%s got %+v %+v", a.id, f.Control, f.Header)
			}
		}
	}
	idle(t, h)
}

// TestUpstreamReportExt: the extension headers the upstream made of its
// answer (the to_web rules of a MESSAGE's response) ride on the
// delivery report, a success's and a failure's.
func TestUpstreamReportExt(t *testing.T) {
	for _, code := range []int{200, 486} {
		up := &fakeUpstream{routes: true}
		h, d := newHandler(t, Options{Upstream: up})
		a := d.add("a", "alice@x")
		h.HandleFrame(a, sendFrame(1, "sip:+123@pstn", `{"body":"hello"}`))
		ext := []protocol.Ext{{Name: "x-carrier", Kind: protocol.ExtString, Value: "acme"}}
		up.reports[0](code, "", ext)
		f := a.only(t)
		if e, ok := f.Header.ExtValue("x-carrier"); !ok || e.Value != "acme" {
			t.Errorf("%d: report's extension headers %v", code, f.Header.Ext)
		}
		idle(t, h)
	}
}
