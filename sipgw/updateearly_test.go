package sipgw

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestUpdateEarly: our own new offer in the early dialog of a reliable
// 183 that answered the INVITE's offer goes as an UPDATE to that dialog
// (its To-tag and Contact) when the 183 allows UPDATE, and its 200's SDP
// is the answer; without UPDATE in the 183's Allow nothing is sent
// (RFC 3311 section 5.1).
func TestUpdateEarly(t *testing.T) {
	for _, allow := range []bool{true, false} {
		t.Run(map[bool]string{true: "allowed", false: "not allowed"}[allow], func(t *testing.T) {
			var port atomic.Int64 // set once the peer listens, read at the INVITE
			invite := make(chan *sip.Request, 1)
			bob := newFakePeer(t, func(req *sip.Request) *sip.Response {
				res := sip.NewResponseFromRequest(req, 200, "OK", nil)
				switch req.Method {
				case sip.INVITE:
					invite <- req
					res = reliable183(req, "far", allow, int(port.Load()))
				case sip.UPDATE:
					setSDP(res, []byte("v=0\r\no=bob 1 2 IN IP4 127.0.0.1\r\n"))
				}
				return res
			})
			port.Store(int64(bob.pc.LocalAddr().(*net.UDPAddr).Port))
			g := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}, nil)
			ctx := context.Background()
			c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n")})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.UpdateEarly(ctx, []byte("v=0\r\n")); !errors.Is(err, ErrCallState) {
				t.Fatalf("UpdateEarly before the 183: %v, want ErrCallState", err)
			}
			for ev := range c.Events() {
				if ev.Kind == EventProgress && ev.Reliable {
					break
				}
			}
			// Prack returns once the PRACK's 200 settled the early dialog.
			if _, err := c.Prack(ctx, nil); err != nil {
				t.Fatal(err)
			}
			offer := []byte("v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n")
			answer, _, err := c.UpdateEarly(ctx, offer)
			// The call ends answered, so that nothing waits for the
			// INVITE's timeout.
			defer func() {
				bob.answerEarly(t, g, <-invite, int(port.Load()))
				for ev := range c.Events() {
					if ev.Kind == EventAnswered {
						break
					}
				}
				if err := c.Hangup(ctx); err != nil {
					t.Error(err)
				}
				bob.next(t, sip.BYE)
			}()
			if !allow {
				if !errors.Is(err, ErrUpdateNotAllowed) {
					t.Fatalf("UpdateEarly: %v, want ErrUpdateNotAllowed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(answer) != "v=0\r\no=bob 1 2 IN IP4 127.0.0.1\r\n" {
				t.Fatalf("answer %q, want the UPDATE's 200's SDP", answer)
			}
			up := bob.next(t, sip.UPDATE)
			if tag, _ := up.To().Params.Get("tag"); tag != "far" || string(up.Body()) != string(offer) {
				t.Fatalf("UPDATE To-tag %q body %q, want far and our offer", tag, up.Body())
			}
			if up.Recipient.Port != int(port.Load()) {
				t.Fatalf("UPDATE to %s, want the 183's Contact", up.Recipient.String())
			}
		})
	}
}

// reliable183 is bob's reliable 183 with SDP to the INVITE req, in an
// early dialog of To-tag tag, with UPDATE in its Allow if allow, from
// the peer listening on port.
func reliable183(req *sip.Request, tag string, allow bool, port int) *sip.Response {
	res := sip.NewResponseFromRequest(req, 183, "Session Progress", nil)
	res.To().Params.Add("tag", tag)
	res.AppendHeader(sip.NewHeader("Require", "100rel"))
	res.AppendHeader(sip.NewHeader("RSeq", "1"))
	methods := "INVITE, ACK, BYE, CANCEL, PRACK"
	if allow {
		methods += ", UPDATE"
	}
	res.AppendHeader(sip.NewHeader("Allow", methods))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: port}})
	setSDP(res, []byte("v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\n"))
	return res
}
