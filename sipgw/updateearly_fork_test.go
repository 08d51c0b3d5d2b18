package sipgw

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestUpdateEarlyForks: a forking proxy brings a second fork's 183 with
// SDP (To-tag far2) after the first fork's reliable 183 (far1) was
// PRACKed. The web caller's session, and rtpengine's, are the latest
// answer's (docs/media.md, "Forks"), so the early re-offer goes as an
// UPDATE to far2 once its reliable 183 is PRACKed, and to no fork while
// far2's 183 is unreliable (RFC 3311 section 5.1: an UPDATE is for one
// early dialog). Before, far2's reliable 183 was taken for a
// retransmission of far1's (the same RSeq, counted per call, not per
// dialog) and never PRACKed, and the UPDATE went to far1, whose answer
// the browser no longer had (issue 14).
func TestUpdateEarlyForks(t *testing.T) {
	for _, reliable := range []bool{true, false} {
		t.Run(map[bool]string{true: "reliable", false: "unreliable"}[reliable], func(t *testing.T) {
			bob, g, port, invite := earlyPeer(t, "far1", true, nil)
			ctx := context.Background()
			c := dialEarly(t, g)
			inv := <-invite
			progress := func(tag string) Event {
				t.Helper()
				timeout := time.After(10 * time.Second)
				for {
					select {
					case ev := <-c.Events():
						if ev.Kind == EventProgress && ev.ToTag == tag {
							return ev
						}
					case <-timeout:
						t.Fatalf("no progress of %s within 10s", tag)
					}
				}
			}
			progress("far1")
			if _, err := c.Prack(ctx, nil); err != nil {
				t.Fatal(err)
			}
			bob.next(t, sip.PRACK)
			// The second fork, from the same peer: its own early dialog,
			// whose RSeq space starts at 1 too.
			second := reliable183(inv, "far2", true, port)
			if !reliable {
				second.RemoveHeader("Require")
				second.RemoveHeader("RSeq")
			}
			gw, err := net.ResolveUDPAddr("udp", g.Addr("udp"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.pc.WriteTo([]byte(second.String()), gw); err != nil {
				t.Fatal(err)
			}
			if ev := progress("far2"); ev.Reliable != reliable {
				t.Fatalf("far2's 183 reliable %v", ev.Reliable)
			}
			offer := []byte("v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n")
			defer bob.endEarly(t, g, c, inv, port)
			if !reliable {
				if _, _, err := c.UpdateEarly(ctx, offer); !errors.Is(err, ErrCallState) {
					t.Fatalf("UpdateEarly after an unreliable fork's answer: %v, want ErrCallState", err)
				}
				return
			}
			if _, err := c.Prack(ctx, nil); err != nil {
				t.Fatalf("far2's PRACK: %v", err)
			}
			if p := bob.next(t, sip.PRACK); toTagOf(p) != "far2" {
				t.Fatalf("PRACK to %q, want far2", toTagOf(p))
			}
			if _, _, err := c.UpdateEarly(ctx, offer); err != nil {
				t.Fatal(err)
			}
			if up := bob.next(t, sip.UPDATE); toTagOf(up) != "far2" {
				t.Fatalf("UPDATE to %q, want far2, the latest answer's fork", toTagOf(up))
			}
		})
	}
}

func toTagOf(req *sip.Request) string {
	tag, _ := req.To().Params.Get("tag")
	return tag
}
