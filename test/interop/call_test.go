package interop

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/sipgw"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial calls the SIPp UAS listening on port through Kamailio.
func dial(t *testing.T, g *sipgw.UserAgent, port int, o sipgw.DialOptions) *sipgw.Call {
	t.Helper()
	o.Identity = "alice@" + domain
	o.Target = "uas-" + strconv.Itoa(port) + "@" + domain
	o.SDP = []byte(offer)
	c, err := g.Dial(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOutgoingAnsweredOurBye(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	uas := startSipp(t, "uas_answer.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	ev := answered(t, c)
	if ev.Code != 200 || !strings.Contains(string(ev.SDP), "m=audio") {
		t.Fatalf("answer %d %q", ev.Code, ev.SDP)
	}
	if err := c.Ack(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if ev := ended(t, c); ev.End != sipgw.EndLocalBye || ev.Code != 200 {
		t.Fatalf("end %v %d", ev.End, ev.Code)
	}
	uas.expectSuccess(t)
	assertIdle(t, g)
}

func TestOutgoingBusy(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	uas := startSipp(t, "uas_busy.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	if ev := ended(t, c); ev.End != sipgw.EndRejected || ev.Code != 486 {
		t.Fatalf("end %v %d", ev.End, ev.Code)
	}
	uas.expectSuccess(t)
	assertIdle(t, g)
}

func TestOutgoingCancelled(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	uas := startSipp(t, "uas_noanswer.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	expect(t, c, sipgw.EventProgress)
	if err := c.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if ev := ended(t, c); ev.End != sipgw.EndCancelled || ev.Code != 487 {
		t.Fatalf("end %v %d", ev.End, ev.Code)
	}
	uas.expectSuccess(t)
	assertIdle(t, g)
}

func TestOutgoingFarEndBye(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	farEndBye(t, g)
}

// farEndBye runs a call from alice that the SIPp UAS answers and hangs
// up, and returns the UAS (its -trace_msg log in its Dir).
func farEndBye(t *testing.T, g *sipgw.UserAgent) *Sipp {
	t.Helper()
	uas := startSipp(t, "uas_farbye.xml", "", "-trace_msg")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	answeredAcked(t, c)
	if ev := ended(t, c); ev.End != sipgw.EndRemoteBye {
		t.Fatalf("end %v %d", ev.End, ev.Code)
	}
	uas.expectSuccess(t)
	assertIdle(t, g)
	return uas
}

func TestOutgoingEarlyMedia(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	uas := startSipp(t, "uas_early.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	ev := expect(t, c, sipgw.EventProgress)
	if ev.Code != 183 || !strings.Contains(string(ev.SDP), "m=audio") {
		t.Fatalf("progress %d %q", ev.Code, ev.SDP)
	}
	answeredAcked(t, c)
	hangUpClean(t, g, c, uas)
}

func TestOutgoing100relPrack(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	uas := startSipp(t, "uas_100rel.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{Offer100rel: true})
	ev := expect(t, c, sipgw.EventProgress)
	if ev.Code != 183 || !ev.Reliable || ev.RSeq != 1 {
		t.Fatalf("progress %+v", ev)
	}
	if _, err := c.Prack(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	answeredAcked(t, c)
	hangUpClean(t, g, c, uas)
}

func TestReinviteHoldResume(t *testing.T) {
	k := startKamailio(t)
	g := newGateway(t, k, nil)
	uas := startSipp(t, "uas_reinvite.xml", "")
	c := dial(t, g, uas.Port, sipgw.DialOptions{})
	answeredAcked(t, c)
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	if ans, _, err := c.Reoffer(ctxT(t), []byte(hold)); err != nil || !strings.Contains(string(ans), "m=audio") {
		t.Fatalf("hold: %v %q", err, ans)
	}
	if _, _, err := c.Reoffer(ctxT(t), []byte(offer)); err != nil {
		t.Fatalf("resume: %v", err)
	}
	// The far end puts us on hold.
	ev := expect(t, c, sipgw.EventReoffer)
	if !strings.Contains(string(ev.SDP), "a=sendonly") {
		t.Fatalf("reoffer sdp %q", ev.SDP)
	}
	if err := ev.Reoffer.Accept([]byte(strings.Replace(offer, "a=sendrecv", "a=recvonly", 1))); err != nil {
		t.Fatal(err)
	}
	// A second Accept is refused.
	if err := ev.Reoffer.Accept([]byte(offer)); !errors.Is(err, sipgw.ErrCallState) {
		t.Fatalf("second accept: %v", err)
	}
	expect(t, c, sipgw.EventConfirmed)
	hangUpClean(t, g, c, uas)
}

// answered skips provisional events (sipgo may deliver a 180 that raced
// the 200 after it, or drop it) and returns the answer.
// answeredAcked waits for c's 200 and ACKs it.
func answeredAcked(t *testing.T, c *sipgw.Call) {
	t.Helper()
	answered(t, c)
	if err := c.Ack(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
}

// hangUpClean sends BYE on c, and checks that the call ended, the UAS's
// scenario passed and nothing is left on the SIP side.
func hangUpClean(t *testing.T, g *sipgw.UserAgent, c *sipgw.Call, uas *Sipp) {
	t.Helper()
	if err := c.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ended(t, c)
	uas.expectSuccess(t)
	assertIdle(t, g)
}

func answered(t *testing.T, c *sipgw.Call) sipgw.Event {
	t.Helper()
	for {
		ev := next(t, c)
		switch ev.Kind {
		case sipgw.EventProgress:
			if ev.Code < 180 || ev.Code > 183 {
				t.Fatalf("progress %+v", ev)
			}
		case sipgw.EventAnswered:
			return ev
		default:
			t.Fatalf("event %v (code %d, end %v), want answered", ev.Kind, ev.Code, ev.End)
		}
	}
}
