package messaging

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// aliceMessagedBob returns a handler where alice (a) has sent bob (b)
// a message, sequence 3, and the copy bob got.
func aliceMessagedBob(t *testing.T) (h *Handler, a, b *fakeEP, first *protocol.Frame) {
	t.Helper()
	h, d := newHandler(t, Options{})
	a, b = d.add("a", "alice@x"), d.add("b", "bob@x")
	h.HandleFrame(a, sendFrame(3, "bob@x", `{"body":"x"}`))
	return h, a, b, b.only(t)
}

// A copy sent again under a new number is answered under it: the report
// reaches the sender, and the old number answers nothing.
func TestResendMovesTheDelivery(t *testing.T) {
	h, a, b, first := aliceMessagedBob(t)
	done := h.Resend("b", first.Control.CorrelationID)
	if done == nil {
		t.Fatal("Resend of a pending copy returned nil")
	}
	done("s7", true)
	h.HandleFrame(b, answerFrame(first, 200, "")) // the lost number: nothing
	a.none(t)
	again := &protocol.Frame{Control: protocol.Control{CorrelationID: "s7"}}
	h.HandleFrame(b, answerFrame(again, 200, ""))
	wantReport(t, a.only(t), protocol.TypeResponse, 3, "bob@x", 200, "OK")
	idle(t, h)
}

// An answer to the new number that comes before done is kept for it.
func TestResendAnsweredBeforeDone(t *testing.T) {
	h, a, b, first := aliceMessagedBob(t)
	done := h.Resend("b", first.Control.CorrelationID)
	h.HandleFrame(b, answerFrame(&protocol.Frame{Control: protocol.Control{CorrelationID: "s9"}}, 486, ""))
	a.none(t)
	done("s9", true)
	wantReport(t, a.only(t), protocol.TypeError, 3, "bob@x", 486, "Busy Here")
	idle(t, h)
}

// A copy that could not be sent again is gone: its message, with no
// other copy, gets 480; one answered, or ended, is not sent again.
func TestResendFailedOrNotNeeded(t *testing.T) {
	h, a, b, first := aliceMessagedBob(t)
	h.Resend("b", first.Control.CorrelationID)("", false)
	wantReport(t, a.only(t), protocol.TypeError, 3, "bob@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	idle(t, h)

	h.HandleFrame(a, sendFrame(4, "bob@x", `{"body":"y"}`))
	second := b.only(t)
	h.HandleFrame(b, answerFrame(second, 200, ""))
	wantReport(t, a.only(t), protocol.TypeResponse, 4, "bob@x", 200, "OK")
	if done := h.Resend("b", second.Control.CorrelationID); done != nil {
		t.Fatal("Resend of an answered copy returned a func")
	}
	if done := h.Resend("nobody", "s1"); done != nil {
		t.Fatal("Resend to a session with nothing pending returned a func")
	}
	idle(t, h)
}

// Two copies lost with their node, numbered anew the other way round,
// each keep their own report; a delivery left under a number given
// anew cannot be answered (480).
func TestResendNumbersAnew(t *testing.T) {
	h, d := newHandler(t, Options{})
	a := d.add("a", "alice@x")
	b := d.add("b", "bob@x")
	for seq := range uint64(3) {
		h.HandleFrame(a, sendFrame(seq+3, "bob@x", `{"body":"x"}`))
	}
	fs := b.frames()
	if len(fs) != 3 {
		t.Fatalf("bob got %d frames, want 3", len(fs))
	}
	first := h.Resend("b", fs[0].Control.CorrelationID)
	second := h.Resend("b", fs[1].Control.CorrelationID)
	first(fs[1].Control.CorrelationID, true)
	second(fs[2].Control.CorrelationID, true) // the third's number: it is lost
	wantReport(t, a.only(t), protocol.TypeError, 5, "bob@x", protocol.CodeTemporarilyUnavail, "Temporarily Unavailable")
	h.HandleFrame(b, answerFrame(fs[2], 200, ""))
	wantReport(t, a.only(t), protocol.TypeResponse, 4, "bob@x", 200, "OK")
	h.HandleFrame(b, answerFrame(fs[1], 202, ""))
	wantReport(t, a.only(t), protocol.TypeResponse, 3, "bob@x", 202, "Accepted")
	idle(t, h)
}

// A copy taken out to be sent again and then dropped at the report
// timeout is not put back.
func TestResendOfAnExpiredMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d := newHandler(t, Options{Timeout: 10 * time.Second})
		a := d.add("a", "alice@x")
		b := d.add("b", "bob@x")
		h.HandleFrame(a, sendFrame(3, "bob@x", `{"body":"x"}`))
		done := h.Resend("b", b.only(t).Control.CorrelationID)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantReport(t, a.only(t), protocol.TypeError, 3, "bob@x", protocol.CodeRequestTimeout, "no delivery report")
		done("s1", true)
		a.none(t)
		idle(t, h)
	})
}
