package sipgw

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestHangupOneBye: two hang-ups of one answered call at once (the web
// side's end and the gateway's Shutdown, which hangs up every call) send
// one BYE: the second waited for the first's transaction and found the
// dialog ending. A second BYE after the first was answered is a request
// in a dialog that no longer exists (481 at best).
func TestHangupOneBye(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	byes := make(chan struct{}, 8)
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := msg.(*sip.Request)
			if err != nil || !ok || req.Method == sip.ACK {
				continue
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			switch req.Method {
			case sip.INVITE:
				res.To().Params.Add("tag", "far")
				res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: pc.LocalAddr().(*net.UDPAddr).Port}})
				res.SetBody([]byte("v=0\r\n"))
				res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			case sip.BYE:
				byes <- struct{}{}
			}
			_, _ = pc.WriteTo([]byte(res.String()), from)
		}
	}()
	g := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com",
		OutboundProxy: "sip:" + pc.LocalAddr().String()}, nil)
	ctx := context.Background()
	c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte("v=0\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.Kind == EventAnswered {
			break
		}
		if ev.Kind == EventEnded {
			t.Fatalf("ended before the answer: %+v", ev)
		}
	}
	if err := c.Ack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _ = c.Hangup(ctx) })
	}
	wg.Wait()
	// Each BYE was counted before it was answered, and each hang-up
	// returned only once its own BYE (if any) was answered.
	if n := len(byes); n != 1 {
		t.Fatalf("%d BYEs for one dialog, want 1", n)
	}
}
