package sipgw

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
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
			bob, g, port, invite := earlyPeer(t, "far", allow, nil)
			ctx := context.Background()
			c := dialEarly(t, g)
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
			defer func() { bob.endEarly(t, g, c, <-invite, port) }()
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
			if up.Recipient.Port != port {
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

// earlyPeer is bob behind g: he answers an INVITE with reliable183 in the
// early dialog of To-tag tag (UPDATE allowed if allow), an UPDATE with
// SDP, and anything else 200 (a PRACK after onPrack(answer), if set,
// where answer sends the INVITE's 200); the INVITEs go to invites. port
// is his.
func earlyPeer(t *testing.T, tag string, allow bool, onPrack func(answer func())) (bob *fakeProxy, g *UserAgent, port int, invites <-chan *sip.Request) {
	t.Helper()
	// Set once the peer listens and g runs, read at the requests.
	var p atomic.Int64
	var self atomic.Pointer[fakeProxy]
	var ua atomic.Pointer[UserAgent]
	var mu sync.Mutex
	byID := map[string]*sip.Request{}
	ch := make(chan *sip.Request, 64)
	bob = newFakePeer(t, func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		switch req.Method {
		case sip.INVITE:
			mu.Lock()
			byID[req.CallID().Value()] = req
			mu.Unlock()
			ch <- req
			res = reliable183(req, tag, allow, int(p.Load()))
		case sip.PRACK:
			if onPrack != nil {
				mu.Lock()
				inv := byID[req.CallID().Value()]
				mu.Unlock()
				onPrack(func() { self.Load().answerEarly(t, ua.Load(), inv, int(p.Load())) })
			}
		case sip.UPDATE:
			setSDP(res, []byte("v=0\r\no=bob 1 2 IN IP4 127.0.0.1\r\n"))
		}
		return res
	})
	port = bob.pc.LocalAddr().(*net.UDPAddr).Port
	p.Store(int64(port))
	self.Store(bob)
	g = startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: bob.uri()}, nil)
	ua.Store(g)
	return bob, g, port, ch
}

// dialEarly dials bob from alice on g.
func dialEarly(t *testing.T, g *UserAgent) *Call {
	t.Helper()
	c, err := g.Dial(context.Background(), DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// endEarly answers the early call c of INVITE inv and hangs up, so that
// nothing waits for the INVITE's timeout.
func (p *fakeProxy) endEarly(t *testing.T, g *UserAgent, c *Call, inv *sip.Request, port int) {
	t.Helper()
	p.answerEarly(t, g, inv, port)
	for ev := range c.Events() {
		if ev.Kind == EventAnswered {
			break
		}
	}
	if err := c.Hangup(context.Background()); err != nil {
		t.Error(err)
	}
	p.next(t, sip.BYE)
}

// TestEarlyInfo: a DTMF INFO before the answer (to an IVR playing early
// media) goes in the early dialog of the PRACKed reliable 183, to its
// Contact with its To-tag, and a REFER there is still refused; before the
// PRACK the INFO is refused too (ErrCallState), nothing sent.
func TestEarlyInfo(t *testing.T) {
	bob, g, port, invite := earlyPeer(t, "far", true, nil)
	ctx := context.Background()
	c := dialEarly(t, g)
	for ev := range c.Events() {
		if ev.Kind == EventProgress && ev.Reliable {
			break
		}
	}
	if err := c.SendDTMF(ctx, "7", 0); !errors.Is(err, ErrCallState) {
		t.Fatalf("DTMF before the PRACK: %v, want ErrCallState", err)
	}
	if _, err := c.Prack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { bob.endEarly(t, g, c, <-invite, port) }()
	prack := bob.next(t, sip.PRACK).CSeq().SeqNo
	if err := c.SendDTMF(ctx, "7", 0); err != nil {
		t.Fatal(err)
	}
	in := bob.next(t, sip.INFO)
	if tag, _ := in.To().Params.Get("tag"); tag != "far" || in.Recipient.Port != port || in.CSeq().SeqNo <= prack || !strings.Contains(string(in.Body()), "Signal=7") {
		t.Fatalf("INFO to %s To-tag %q CSeq %d (PRACK's %d) body %q", in.Recipient.String(), tag, in.CSeq().SeqNo, prack, in.Body())
	}
	if _, err := c.Transfer(ctx, "carol"); !errors.Is(err, ErrCallState) {
		t.Fatalf("REFER before the answer: %v, want ErrCallState", err)
	}
}
