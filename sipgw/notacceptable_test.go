package sipgw

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestDialNotAcceptable: an INVITE refused for its media (488) is sent
// once more with the offer DialOptions.NotAcceptable gives (same Call-ID
// and From-tag, next CSeq, a new branch), and the call goes on; without
// another offer, or refused again, the refusal ends the call.
func TestDialNotAcceptable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offer   string // what NotAcceptable returns
		refuse  int32  // how many INVITEs bob refuses with 488
		invites int32
		end     EndCause
	}{
		{"retried", "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\nm=audio 9 RTP/SAVP 0\r\n", 1, 2, 0},
		{"no other offer", "", 1, 1, EndRejected},
		{"refused again", "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\nm=audio 9 RTP/SAVP 0\r\n", 2, 2, EndRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			g, bob := answeringPeer(t, func(req *sip.Request, res *sip.Response) {
				if req.Method == sip.INVITE && n.Add(1) <= tc.refuse {
					res.StatusCode, res.Reason = 488, "Not Acceptable Here"
				}
			})
			asked := make(chan int, 2)
			ctx := context.Background()
			c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\nm=audio 9 RTP/AVP 0\r\n"),
				NotAcceptable: func(ctx context.Context, code int) []byte {
					asked <- code
					return []byte(tc.offer)
				}})
			if err != nil {
				t.Fatal(err)
			}
			first := bob.next(t, sip.INVITE)
			var ev Event
			for ev = range c.Events() {
				if ev.Kind == EventAnswered || ev.Kind == EventEnded {
					break
				}
			}
			if code := <-asked; code != 488 {
				t.Fatalf("NotAcceptable asked for %d, want 488", code)
			}
			if got := n.Load(); got != tc.invites {
				t.Fatalf("%d INVITEs, want %d", got, tc.invites)
			}
			if tc.end != 0 {
				if ev.Kind != EventEnded || ev.End != tc.end || ev.Code != 488 {
					t.Fatalf("event %v end %v code %d, want the 488 to end the call", ev.Kind, ev.End, ev.Code)
				}
				return
			}
			second := bob.next(t, sip.INVITE)
			if ev.Kind != EventAnswered {
				t.Fatalf("event %v, want the answer to the second INVITE", ev.Kind)
			}
			ft1, _ := first.From().Params.Get("tag")
			ft2, _ := second.From().Params.Get("tag")
			switch {
			case first.CallID().Value() != second.CallID().Value() || ft1 != ft2:
				t.Errorf("second INVITE in another call: %s %s, first %s %s", second.CallID().Value(), ft2, first.CallID().Value(), ft1)
			case second.CSeq().SeqNo != first.CSeq().SeqNo+1:
				t.Errorf("second INVITE CSeq %d, first %d", second.CSeq().SeqNo, first.CSeq().SeqNo)
			case viaBranch(second) == viaBranch(first):
				t.Errorf("second INVITE on the first's branch")
			case string(second.Body()) != tc.offer:
				t.Errorf("second INVITE's SDP %q, want the new offer", second.Body())
			}
			if err := c.Ack(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			bob.next(t, sip.BYE)
		})
	}
}

func viaBranch(r *sip.Request) string {
	b, _ := r.Via().Params.Get("branch")
	return b
}
