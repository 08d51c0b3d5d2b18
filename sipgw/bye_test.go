package sipgw

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// answeredCall dials a fake peer that answers everything with 200 and
// returns the call, answered and ACKed, and the peer.
// answeringPeer is a gateway whose outbound proxy is bob, a peer that
// answers every request 200 (an INVITE with a To-tag, its Contact and
// SDP); more, when set, adds to each response.
func answeringPeer(t *testing.T, more func(req *sip.Request, res *sip.Response)) (*UserAgent, *fakeProxy) {
	t.Helper()
	var port atomic.Int64 // set once the peer listens, read at its first INVITE
	bob := newFakePeer(t, func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if more != nil {
			more(req, res)
		}
		if req.Method == sip.INVITE {
			res.To().Params.Add("tag", "far")
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: int(port.Load())}})
			res.SetBody([]byte("v=0\r\n"))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		return res
	})
	port.Store(int64(bob.pc.LocalAddr().(*net.UDPAddr).Port))
	return startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}, nil), bob
}

func answeredCall(t *testing.T) (*Call, *fakeProxy) {
	t.Helper()
	g, bob := answeringPeer(t, nil)
	return dialAnswered(t, g, "v=0\r\n"), bob
}

// dialAnswered dials bob from alice on g with sdp and returns the call,
// answered and ACKed.
func dialAnswered(tb testing.TB, g *UserAgent, sdp string) *Call {
	tb.Helper()
	ctx := context.Background()
	c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte(sdp)})
	if err != nil {
		tb.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.Kind == EventAnswered {
			break
		}
		if ev.Kind == EventEnded {
			tb.Fatalf("ended before the answer: %+v", ev)
		}
	}
	if err := c.Ack(ctx, nil); err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestHangupOneBye: two hang-ups of one answered call at once (the web
// side's end and the gateway's Shutdown, which hangs up every call) send
// one BYE: the second waited for the first's transaction and found the
// dialog ending. A second BYE after the first was answered is a request
// in a dialog that no longer exists (481 at best).
func TestHangupOneBye(t *testing.T) {
	c, bob := answeredCall(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _ = c.Hangup(ctx) })
	}
	wg.Wait()
	// Each BYE reached got before it was answered, and each hang-up
	// returned only once its own BYE (if any) was answered.
	byes := 0
	for len(bob.got) > 0 {
		if r := <-bob.got; r.Method == sip.BYE {
			byes++
		}
	}
	if byes != 1 {
		t.Fatalf("%d BYEs for one dialog, want 1", byes)
	}
}

// TestHangupWithReason: a call ended for a cause the far end should hear
// (its media relay lost) gets a BYE with an RFC 3326 Reason header; a
// reason that would break the quoted string is refused.
func TestHangupWithReason(t *testing.T) {
	c, bob := answeredCall(t)
	if err := c.HangupWith(t.Context(), 503, `say "hi"`); err == nil {
		t.Fatal("a quote in the reason was accepted")
	}
	if err := c.HangupWith(t.Context(), 503, "media relay lost"); err != nil {
		t.Fatal(err)
	}
	for len(bob.got) > 0 {
		r := <-bob.got
		if r.Method != sip.BYE {
			continue
		}
		if h := r.GetHeader("Reason"); h == nil || h.Value() != `SIP;cause=503;text="media relay lost"` {
			t.Fatalf("BYE Reason %v", h)
		}
		return
	}
	t.Fatal("no BYE")
}
