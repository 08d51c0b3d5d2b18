package sipgw

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// send writes raw, a request, to addr ("host:port", UDP) and returns
// the final response it gets.
func (p *fakeProxy) send(t *testing.T, addr, raw string) *sip.Response {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.pc.WriteTo([]byte(raw), ua); err != nil {
		t.Fatal(err)
	}
	return p.final(t)
}

// final returns the next final response p gets, within 10 s.
func (p *fakeProxy) final(t *testing.T) *sip.Response {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case res := <-p.res:
			if res.StatusCode >= 200 {
				return res
			}
		case <-timeout:
			t.Fatal("no final response")
			return nil
		}
	}
}

// rawRequest is a request of method from p, with extra header lines.
func (p *fakeProxy) rawRequest(method, ruri, from, to, callID string, cseq int, extra, body string) string {
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:bob@%s>\r\n%sContent-Length: %d\r\n\r\n%s",
		method, ruri, p.pc.LocalAddr(), callID, cseq, from, to, callID, cseq, method, p.pc.LocalAddr(), extra, len(body), body)
}

// TestMessageTransforms: the to_web rules read the response to the
// gateway's MESSAGE (the delivery report's headers), and the header
// rules go on the gateway's answer to an incoming MESSAGE, {ext:NAME}
// from the web user's answer; a value there that the header grammar
// refuses leaves that rule off, and the answer goes all the same.
func TestMessageTransforms(t *testing.T) {
	g, bob := answeringPeer(t, func(req *sip.Request, res *sip.Response) {
		res.AppendHeader(sip.NewHeader("X-Carrier", "acme-"+string(req.Method)))
	})
	r := mustRouting(t, `
headers:
  - {header: X-Served, value: "{identity}", methods: [MESSAGE], on: responses}
  - {header: X-Mood, value: "{ext:x-mood}", methods: [MESSAGE], on: responses}
to_web:
  - {header: X-Carrier, ext: x-carrier, methods: [MESSAGE], on: responses}
  - {header: X-Tag, ext: x-tag, methods: [MESSAGE], on: requests}
`)
	type report struct {
		code int
		hs   []Header
	}
	got := make(chan report, 1)
	x := r.Bind(routing.Request{Kind: routing.Message, Identity: "alice@example.com", Target: "bob"})
	err := g.SendMessage(MessageOptions{Identity: "alice@example.com", Target: "bob", Body: []byte("hi"), Route: Route{Transform: x}},
		func(code int, _ string, hs []Header) { got <- report{code, hs} })
	if err != nil {
		t.Fatal(err)
	}
	rep := <-got
	if rep.code != 200 || len(rep.hs) != 1 || rep.hs[0] != (Header{"x-carrier", "acme-MESSAGE"}) {
		t.Errorf("delivery report %d, headers %v", rep.code, rep.hs)
	}
	if m := bob.next(t, sip.MESSAGE); m.GetHeader("X-Served") != nil {
		t.Errorf("a responses rule on the request")
	}

	g.SetRouting(r)
	in := make(chan *IncomingMessage, 2)
	mood := "glad"
	g.OnMessage(func(_ context.Context, m *IncomingMessage) (int, string, []Header) {
		v := mood // read before in: the test sets the next one after it
		in <- m
		return 200, "OK", []Header{{"x-mood", v}}
	})
	res := bob.send(t, g.Addr("udp"), bob.rawRequest("MESSAGE", "sip:carol@example.com", "<sip:bob@example.net>;tag=b1",
		"<sip:carol@example.com>", "m1", 1, "X-Tag: t1\r\nContent-Type: text/plain\r\n", "hello"))
	if h := res.GetHeader("X-Served"); res.StatusCode != 200 || h == nil || h.Value() != "carol@example.com" {
		t.Errorf("answer %d, X-Served %v", res.StatusCode, h)
	}
	if h := res.GetHeader("X-Mood"); h == nil || h.Value() != "glad" {
		t.Errorf("answer's X-Mood %v", h)
	}
	if m := <-in; len(m.Headers) != 1 || m.Headers[0] != (Header{"x-tag", "t1"}) {
		t.Errorf("incoming MESSAGE headers %v", m.Headers)
	}
	mood = "a\r\nVia: smuggled"
	res = bob.send(t, g.Addr("udp"), bob.rawRequest("MESSAGE", "sip:carol@example.com", "<sip:bob@example.net>;tag=b2",
		"<sip:carol@example.com>", "m2", 1, "", "hello"))
	<-in
	if res.StatusCode != 200 || res.GetHeader("X-Mood") != nil || res.GetHeader("X-Served") == nil || len(res.GetHeaders("Via")) != 1 {
		t.Errorf("answer with a smuggling value: %d\n%s", res.StatusCode, res)
	}
}

// recSub records what a subscription reports: the headers of its answer
// and of each NOTIFY.
type recSub struct {
	answer chan []Header
	code   chan int
	notify chan []Header
}

func newRecSub() recSub {
	return recSub{answer: make(chan []Header, 1), code: make(chan int, 1), notify: make(chan []Header, 4)}
}

func (e recSub) Accepted(hs []Header) { e.code <- 200; e.answer <- hs }
func (e recSub) Rejected(c int, _ string, hs []Header) {
	e.code <- c
	e.answer <- hs
}
func (e recSub) Notify(_ string, _ []byte, hs []Header) (func(), error) {
	return func() { e.notify <- hs }, nil
}
func (e recSub) Terminated(string) {}

// TestSubscribeTransforms: the to_web rules read the 2xx or failure to
// the gateway's SUBSCRIBE and each NOTIFY of the subscription, and the
// header rules go on the gateway's answers to the NOTIFYs.
func TestSubscribeTransforms(t *testing.T) {
	g, bob := answeringPeer(t, func(req *sip.Request, res *sip.Response) {
		res.AppendHeader(sip.NewHeader("X-Carrier", "acme-"+string(req.Method)))
		res.To().Params.Add("tag", "n1")
	})
	r := mustRouting(t, `
headers:
  - {header: X-Served, value: "{identity}", methods: [NOTIFY], on: responses}
to_web:
  - {header: X-Carrier, ext: x-carrier, methods: [SUBSCRIBE, NOTIFY]}
`)
	x := r.Bind(routing.Request{Kind: routing.Subscribe, Identity: "alice@example.com", Target: "bob"})
	ev := newRecSub()
	s, err := g.Subscribe(SubscribeOptions{Identity: "alice@example.com", Target: "bob", Event: EventMessageSummary,
		Route: Route{Transform: x}}, ev)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if c, hs := <-ev.code, <-ev.answer; c != 200 || len(hs) != 1 || hs[0] != (Header{"x-carrier", "acme-SUBSCRIBE"}) {
		t.Fatalf("SUBSCRIBE answered %d, headers %v", c, hs)
	}
	sub := bob.next(t, sip.SUBSCRIBE)
	fromTag, _ := sub.From().Params.Get("tag")
	contact := sub.Contact().Address.String()
	res := bob.send(t, g.Addr("udp"), bob.rawRequest("NOTIFY", contact, "<sip:bob@example.com>;tag=n1",
		"<sip:alice@example.com>;tag="+fromTag, sub.CallID().Value(), 1,
		"Event: message-summary\r\nSubscription-State: active;expires=60\r\nX-Carrier: vm1\r\nContent-Type: application/simple-message-summary\r\n",
		"Messages-Waiting: yes\r\n"))
	if h := res.GetHeader("X-Served"); res.StatusCode != 200 || h == nil || h.Value() != "alice@example.com" {
		t.Errorf("NOTIFY answered %d, X-Served %v", res.StatusCode, h)
	}
	if hs := <-ev.notify; len(hs) != 1 || hs[0] != (Header{"x-carrier", "vm1"}) {
		t.Errorf("NOTIFY headers %v", hs)
	}

	refuser := newFakePeer(t, func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
		res.AppendHeader(sip.NewHeader("X-Carrier", "no"))
		return res
	})
	g2 := startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: refuser.uri()}, nil)
	ev2 := newRecSub()
	if _, err := g2.Subscribe(SubscribeOptions{Identity: "alice@example.com", Target: "bob", Event: EventPresence,
		Route: Route{Transform: x}}, ev2); err != nil {
		t.Fatal(err)
	}
	if c, hs := <-ev2.code, <-ev2.answer; c != 403 || len(hs) != 1 || hs[0] != (Header{"x-carrier", "no"}) {
		t.Errorf("SUBSCRIBE refused %d, headers %v", c, hs)
	}
}
