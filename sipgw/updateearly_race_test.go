package sipgw

import (
	"context"
	"errors"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestUpdateEarlyRacesAnswer: the callee answers the INVITE as its
// PRACK's 200 leaves, so the 200 reaches sipgo's WaitAnswer, which
// stores it in the dialog, while the web side's early re-offer is being
// built as an UPDATE. Under -race this failed: the UPDATE was built
// through sipgo's dialog, which reads the response WaitAnswer writes
// (issue 14). Whichever comes first, the UPDATE, if it goes, is in the
// early dialog (its To-tag) with a CSeq above the PRACK's, and the BYE's
// is above both.
func TestUpdateEarlyRacesAnswer(t *testing.T) {
	n := raceEarly(t, sip.UPDATE, nil, func(ctx context.Context, c *Call) error {
		_, _, err := c.UpdateEarly(ctx, []byte("v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n"))
		return err
	})
	t.Logf("%d of 20 UPDATEs went before the answer was seen", n)
}

// TestEarlyInfoRacesAnswer: an INFO (a DTMF digit) before the answer
// goes in the early dialog of the PRACKed reliable 183, built as the
// early UPDATE is, while the INVITE's 200 reaches sipgo's WaitAnswer:
// under -race, never of sipgo's dialog. The checks are
// TestUpdateEarlyRacesAnswer's; before the PRACK an INFO is refused
// (ErrCallState).
func TestEarlyInfoRacesAnswer(t *testing.T) {
	send := func(ctx context.Context, c *Call) error { return c.SendDTMF(ctx, "5", 0) }
	n := raceEarly(t, sip.INFO, send, send)
	t.Logf("%d of 20 INFOs went before the answer was seen", n)
}

// raceEarly dials bob 20 times; he answers the INVITE as his PRACK's 200
// leaves. send, before the PRACK if given, must fail with ErrCallState;
// send after it, if it succeeds, must reach bob as a request of method in
// the early dialog (To-tag far) with a CSeq above the PRACK's, and the
// BYE's must be above both. It returns how many sends succeeded.
func raceEarly(t *testing.T, method sip.RequestMethod, before, send func(context.Context, *Call) error) int {
	t.Helper()
	bob, g, _, _ := earlyPeer(t, "far", true, func(answer func()) {
		// The INVITE's 200 goes first: it waits in the INVITE's
		// transaction while the PRACK's 200 lets the web side go on.
		answer()
	})
	ctx := context.Background()
	sent := 0
	for range 20 {
		c := dialEarly(t, g)
		for ev := range c.Events() {
			if ev.Kind == EventProgress && ev.Reliable {
				break
			}
		}
		if before != nil {
			if err := before(ctx, c); !errors.Is(err, ErrCallState) {
				t.Fatalf("%s before the PRACK: %v, want ErrCallState", method, err)
			}
		}
		if _, err := c.Prack(ctx, nil); err != nil {
			t.Fatal(err)
		}
		prack := bob.next(t, sip.PRACK).CSeq().SeqNo
		switch err := send(ctx, c); {
		case err == nil:
			sent++
			r := bob.next(t, method)
			if tag, _ := r.To().Params.Get("tag"); tag != "far" || r.CSeq().SeqNo <= prack {
				t.Fatalf("%s To-tag %q CSeq %d after the PRACK's %d", method, tag, r.CSeq().SeqNo, prack)
			}
			prack = r.CSeq().SeqNo
		case !errors.Is(err, ErrCallState):
			t.Fatalf("%s: %v", method, err)
		}
		for ev := range c.Events() {
			if ev.Kind == EventAnswered {
				break
			}
		}
		if err := c.Ack(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		if bye := bob.next(t, sip.BYE); bye.CSeq().SeqNo <= prack {
			t.Fatalf("BYE CSeq %d, want above the early requests' %d", bye.CSeq().SeqNo, prack)
		}
	}
	return sent
}
