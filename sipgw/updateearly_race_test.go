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
	bob, g, _, _ := earlyPeer(t, "far", true, func(answer func()) {
		// The INVITE's 200 goes first: it waits in the INVITE's
		// transaction while the PRACK's 200 lets the web side go on.
		answer()
	})
	ctx := context.Background()
	updates := 0
	for range 20 {
		c := dialEarly(t, g)
		for ev := range c.Events() {
			if ev.Kind == EventProgress && ev.Reliable {
				break
			}
		}
		if _, err := c.Prack(ctx, nil); err != nil {
			t.Fatal(err)
		}
		prack := bob.next(t, sip.PRACK).CSeq().SeqNo
		_, _, err := c.UpdateEarly(ctx, []byte("v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n"))
		switch {
		case err == nil:
			updates++
			up := bob.next(t, sip.UPDATE)
			if tag, _ := up.To().Params.Get("tag"); tag != "far" || up.CSeq().SeqNo <= prack {
				t.Fatalf("UPDATE To-tag %q CSeq %d after the PRACK's %d", tag, up.CSeq().SeqNo, prack)
			}
			prack = up.CSeq().SeqNo
		case !errors.Is(err, ErrCallState):
			t.Fatalf("UpdateEarly: %v", err)
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
	t.Logf("%d of 20 UPDATEs went before the answer was seen", updates)
}
