package sipgw

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestEarlyUpdateOffer: a callee that answered our offer in a reliable
// 183 sends UPDATE with a new offer in the early dialog (RFC 3311
// section 5.1): it reaches the call as a re-offer, and the web side's
// answer is its 200 (before, the UPDATE found no dialog: 481). After the
// 200 to the INVITE, the early dialog of a fork that lost is gone.
func TestEarlyUpdateOffer(t *testing.T) {
	invite := make(chan *sip.Request, 1)
	var port atomic.Int64 // set once the peer listens, read at the INVITE
	bob := newFakePeer(t, func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if req.Method == sip.INVITE {
			invite <- req
			res = sip.NewResponseFromRequest(req, 183, "Session Progress", nil)
			res.To().Params.Add("tag", "far")
			res.AppendHeader(sip.NewHeader("Require", "100rel"))
			res.AppendHeader(sip.NewHeader("RSeq", "1"))
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: int(port.Load())}})
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.SetBody([]byte("v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\n"))
		}
		return res
	})
	port.Store(int64(bob.pc.LocalAddr().(*net.UDPAddr).Port))
	g := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}, nil)
	ctx := context.Background()
	c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n"), AutoPrack: true})
	if err != nil {
		t.Fatal(err)
	}
	inv := <-invite
	for ev := range c.Events() {
		if ev.Kind == EventProgress && ev.Reliable {
			break
		}
	}
	bob.next(t, sip.PRACK)
	reoffers, answered := make(chan *Reoffer, 1), make(chan Event, 1)
	go func() {
		for ev := range c.Events() {
			switch ev.Kind {
			case EventReoffer:
				reoffers <- ev.Reoffer
			case EventAnswered:
				answered <- ev
			}
		}
	}()
	k := c.Keys()
	from, to := "<sip:bob@example.com>;tag=far", "<sip:alice@example.com>;tag="+k.LocalTag
	ruri := "sip:alice@" + g.Addr("udp")
	done := make(chan *sip.Response, 1)
	go func() {
		done <- bob.send(t, g.Addr("udp"), bob.rawRequest("UPDATE", ruri, from, to, k.CallID, 2,
			"Content-Type: application/sdp\r\n", "v=0\r\no=bob 1 2 IN IP4 127.0.0.1\r\n"))
	}()
	var ro *Reoffer
	select {
	case ro = <-reoffers:
	case res := <-done:
		t.Fatalf("UPDATE answered %d %s before any re-offer", res.StatusCode, res.Reason)
	case <-time.After(10 * time.Second):
		t.Fatal("no re-offer within 10s")
	}
	if err := ro.Accept([]byte("v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n")); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.StatusCode != 200 || string(res.Body()) != "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\n" {
		t.Fatalf("UPDATE answered %d %q, want 200 with the web side's answer", res.StatusCode, res.Body())
	}
	if n := g.Stats().Dialogs; n != 1 {
		t.Fatalf("%d dialogs in the early dialog, want 1", n)
	}
	// The 200 to the INVITE, without SDP (RFC 3261 section 13.2.1:
	// the offer and answer are done); a fork that answered reliably
	// too had its early dialog dropped now.
	bob.answerEarly(t, g, inv, int(port.Load()))
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer event")
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	bob.next(t, sip.BYE)
}

// answerEarly sends the 200 of the INVITE inv whose early dialog has
// To-tag far, from the peer listening on port.
func (p *fakeProxy) answerEarly(t *testing.T, g *UserAgent, inv *sip.Request, port int) {
	t.Helper()
	ok := sip.NewResponseFromRequest(inv, 200, "OK", nil)
	ok.To().Params.Add("tag", "far")
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: port}})
	gw, err := net.ResolveUDPAddr("udp", g.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.pc.WriteTo([]byte(ok.String()), gw); err != nil {
		t.Fatal(err)
	}
}
