package sipgw

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// fakeProxy is a UDP next hop that answers each request with the code
// answer gives its method (0: no answer) and hands every request to got.
type fakeProxy struct {
	pc   net.PacketConn
	got  chan *sip.Request
	acks chan *sip.Request  // the ACKs it got, while there is room
	res  chan *sip.Response // the answers to what it sent (send)
}

func newFakeProxy(t *testing.T, answer func(m sip.RequestMethod) int) *fakeProxy {
	t.Helper()
	return newFakePeer(t, func(req *sip.Request) *sip.Response {
		code := answer(req.Method)
		if code == 0 {
			return nil
		}
		res := sip.NewResponseFromRequest(req, code, "Test", nil)
		if code >= 200 && res.To() != nil {
			if _, ok := res.To().Params.Get("tag"); !ok {
				res.To().Params.Add("tag", "fake")
			}
		}
		return res
	})
}

// newFakePeer is a UDP SIP peer that hands every request but ACK to got
// (the ACKs to acks)
// and answers it with what respond makes of it (nil: no answer).
func newFakePeer(t testing.TB, respond func(*sip.Request) *sip.Response) *fakeProxy {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProxy{pc: pc, got: make(chan *sip.Request, 64), acks: make(chan *sip.Request, 16), res: make(chan *sip.Response, 64)}
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
			if res, ok := msg.(*sip.Response); err == nil && ok {
				select {
				case p.res <- res:
				default:
				}
				continue
			}
			req, ok := msg.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			if req.Method == sip.ACK {
				select {
				case p.acks <- req:
				default:
				}
				continue
			}
			select {
			case p.got <- req:
			default:
			}
			if res := respond(req); res != nil {
				_, _ = pc.WriteTo([]byte(res.String()), from)
			}
		}
	}()
	return p
}

func (p *fakeProxy) uri() string { return "sip:" + p.pc.LocalAddr().String() }

// next returns the next request of method the proxy got.
func (p *fakeProxy) next(t *testing.T, m sip.RequestMethod) *sip.Request {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-p.got:
			if r.Method == m {
				return r
			}
		case <-timeout:
			t.Fatalf("no %s at %s", m, p.uri())
			return nil
		}
	}
}

func startTrunks(t *testing.T, trunks map[string]routing.TrunkConfig) *UserAgent {
	t.Helper()
	return startWith(t, Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, &Options{Trunks: trunks})
}

func sendMessage(t *testing.T, g *UserAgent, o MessageOptions) int {
	t.Helper()
	codes := make(chan int, 1)
	if err := g.SendMessage(o, func(code int, _ string, _ []Header) { codes <- code }); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-codes:
		return c
	case <-time.After(40 * time.Second):
		t.Fatal("no delivery report")
		return 0
	}
}

func TestMessageFailsOverOn503(t *testing.T) {
	p1 := newFakeProxy(t, func(sip.RequestMethod) int { return 503 })
	p2 := newFakeProxy(t, func(sip.RequestMethod) int { return 202 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p1.uri(), p2.uri()}}})
	code := sendMessage(t, g, MessageOptions{Identity: "alice@example.com", Target: "tel:+4420", Body: []byte("hi"),
		Route: Route{Trunk: "t"}})
	if code != 202 {
		t.Fatalf("report %d, want the second proxy's 202", code)
	}
	first, second := p1.next(t, sip.MESSAGE), p2.next(t, sip.MESSAGE)
	for i, r := range []*sip.Request{first, second} {
		route := r.GetHeader("Route")
		want := []string{p1.uri(), p2.uri()}[i]
		if route == nil || !strings.Contains(route.Value(), strings.TrimPrefix(want, "sip:")) {
			t.Errorf("request %d: Route %v, want %s", i, route, want)
		}
	}
	if first.CallID().Value() != second.CallID().Value() {
		t.Errorf("the failover is a new transaction of the same message: Call-ID %s then %s", first.CallID().Value(), second.CallID().Value())
	}
}

func TestInviteFailsOverOn503(t *testing.T) {
	p1 := newFakeProxy(t, func(sip.RequestMethod) int { return 503 })
	p2 := newFakeProxy(t, func(m sip.RequestMethod) int { return 486 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p1.uri(), p2.uri()}}})
	c, err := g.Dial(context.Background(), DialOptions{Identity: "alice@example.com", Target: "+4420", SDP: []byte("v=0\r\n"),
		Route: Route{Trunk: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.Kind == EventEnded {
			if ev.Code != 486 {
				t.Fatalf("ended with %d %+v, want the second proxy's 486", ev.Code, ev)
			}
			break
		}
	}
	p1.next(t, sip.INVITE)
	p2.next(t, sip.INVITE)
}

func TestHealthCheckSkipsDownProxy(t *testing.T) {
	silent := newFakeProxy(t, func(sip.RequestMethod) int { return 0 })
	up := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{silent.uri(), up.uri()},
		HealthInterval: time.Second, HealthTimeout: 200 * time.Millisecond}})
	silent.next(t, sip.OPTIONS)
	up.next(t, sip.OPTIONS)
	// The probes mark the silent proxy down once its OPTIONS times out:
	// wait for that state, polling the status the probes publish.
	deadline := time.Now().Add(10 * time.Second)
	for st := g.TrunkStatus("t"); st[0].Up || !st[1].Up; st = g.TrunkStatus("t") {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v: the silent proxy never went down", st)
		}
		up.next(t, sip.OPTIONS) // the next round
	}
	if code := sendMessage(t, g, MessageOptions{Identity: "alice@example.com", Target: "bob@example.net", Route: Route{Trunk: "t"}}); code != 200 {
		t.Fatalf("report %d", code)
	}
	up.next(t, sip.MESSAGE)
	select {
	case r := <-silent.got:
		if r.Method == sip.MESSAGE {
			t.Fatal("the MESSAGE went to the proxy marked down")
		}
	default:
	}
}

func TestSenderPresentation(t *testing.T) {
	p := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p.uri()}}})
	cases := []struct {
		name               string
		s                  routing.Sender
		from, pai, ppi, pr string
	}{
		{"default", routing.Sender{}, "sip:alice@example.com", "", "", ""},
		{"template", routing.Sender{From: "sip:+15550001@ims.example.com", AssertedIdentity: "sip:+15550001@ims.example.com"},
			"sip:+15550001@ims.example.com", "<sip:+15550001@ims.example.com>", "", ""},
		{"preferred", routing.Sender{PreferredIdentity: "sip:alice@ims.example.com"}, "sip:alice@example.com", "", "<sip:alice@ims.example.com>", ""},
		{"guest privacy", routing.Sender{From: "sip:guest-1@example.com", AssertedIdentity: "sip:guest-1@example.com", Privacy: true},
			"sip:anonymous@anonymous.invalid", "<sip:guest-1@example.com>", "", "id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code := sendMessage(t, g, MessageOptions{Identity: "alice@example.com", Target: "bob@example.net",
				Route: Route{Trunk: "t", Sender: c.s}}); code != 200 {
				t.Fatalf("report %d", code)
			}
			r := p.next(t, sip.MESSAGE)
			if got := r.From().Address.String(); got != c.from {
				t.Errorf("From %s, want %s", got, c.from)
			}
			for name, want := range map[string]string{"P-Asserted-Identity": c.pai, "P-Preferred-Identity": c.ppi, "Privacy": c.pr} {
				got := ""
				if h := r.GetHeader(name); h != nil {
					got = h.Value()
				}
				if got != want {
					t.Errorf("%s %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestSenderRefusesSmuggling(t *testing.T) {
	g := startTrunks(t, nil)
	for _, bad := range []string{
		"sip:alice@example.com;lr", "sip:alice@example.com?Route=x", "sip:alice@example.com>,<sip:evil@x",
		"sip:alice@example.com\r\nVia: x", "tel:+1555", "sip:al ice@example.com", "sip:alice:pw@example.com",
		"sip:alice@example.com:5060", "<sip:alice@example.com>",
	} {
		for _, s := range []routing.Sender{{From: bad}, {AssertedIdentity: bad}, {PreferredIdentity: bad}} {
			err := g.SendMessage(MessageOptions{Identity: "alice@example.com", Target: "bob@example.net", Route: Route{Sender: s}},
				func(int, string, []Header) {})
			if err == nil || ResponseCode(err) != 400 {
				t.Errorf("sender %+v: %v, want a 400", s, err)
			}
		}
	}
}

func TestRouteErrors(t *testing.T) {
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{"sip:127.0.0.1:9"}}})
	g.trunks.Load().m["t"].proxies[0].down.Store(true)
	err := g.SendMessage(MessageOptions{Identity: "alice@example.com", Target: "bob@example.net", Route: Route{Trunk: "t"}}, func(int, string, []Header) {})
	if ResponseCode(err) != 503 {
		t.Errorf("every proxy down: %v, want 503", err)
	}
	if err := g.SendMessage(MessageOptions{Identity: "alice@example.com", Target: "bob", Route: Route{Trunk: "nope"}}, func(int, string, []Header) {}); err == nil {
		t.Error("an unknown trunk was accepted")
	}
}

// A reload replaces the trunks: the next request goes to the new proxy,
// and a proxy kept keeps the health state its checks found.
func TestSetTrunks(t *testing.T) {
	p1 := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	p2 := newFakeProxy(t, func(sip.RequestMethod) int { return 202 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p1.uri()}}, "u": {Proxies: []string{p1.uri()}}})
	g.trunks.Load().m["u"].proxies[0].down.Store(true)
	if err := g.SetTrunks(map[string]routing.TrunkConfig{"t": {Proxies: []string{p2.uri()}}, "u": {Proxies: []string{p1.uri(), p2.uri()}}}); err != nil {
		t.Fatal(err)
	}
	if code := sendMessage(t, g, MessageOptions{Identity: "alice@example.com", Target: "bob@example.net", Route: Route{Trunk: "t"}}); code != 202 {
		t.Fatalf("report %d, want the new proxy's 202", code)
	}
	if st := g.TrunkStatus("u"); len(st) != 2 || st[0].Up || !st[1].Up {
		t.Fatalf("status after the reload %+v: the kept proxy lost its state", st)
	}
	if err := g.SetTrunks(map[string]routing.TrunkConfig{"t": {Proxies: []string{"sip:a@b"}}}); err == nil {
		t.Fatal("a bad proxy was taken")
	}
	if g.TrunkStatus("t")[0].URI != p2.uri() {
		t.Fatal("a refused reload changed the trunks")
	}
}

// Header rules' headers go out, replace a client's header of their name,
// and are checked as a client's are.
func TestRouteHeaders(t *testing.T) {
	p := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p.uri()}}})
	code := sendMessage(t, g, MessageOptions{Identity: "alice@example.com", Target: "bob@example.net",
		Headers: []Header{{"X-Account", "forged"}, {"X-App", "kept"}, {"X-Debug", "on"}},
		Route: Route{Trunk: "t", Headers: []routing.Header{{Name: "X-Account", Value: "42"},
			{Name: "x-debug", Drop: true}}}})
	if code != 200 {
		t.Fatalf("report %d", code)
	}
	r := p.next(t, sip.MESSAGE)
	if hs := r.GetHeaders("X-Account"); len(hs) != 1 || hs[0].Value() != "42" {
		t.Errorf("X-Account %v, want the rule's alone", hs)
	}
	if h := r.GetHeader("X-App"); h == nil || h.Value() != "kept" {
		t.Errorf("X-App %v", h)
	}
	if h := r.GetHeader("X-Debug"); h != nil {
		t.Errorf("X-Debug %v went out: a rule drops it", h)
	}
	for _, bad := range []routing.Header{{Name: "P-Asserted-Identity", Value: "<sip:x@y>"}, {Name: "X-A", Value: "a\r\nVia: x"}} {
		err := g.SendMessage(MessageOptions{Identity: "alice@example.com", Target: "bob@example.net",
			Route: Route{Headers: []routing.Header{bad}}}, func(int, string, []Header) {})
		if ResponseCode(err) != 400 {
			t.Errorf("header %v: %v, want 400", bad, err)
		}
	}
}

// A rule's Request-URI parameter goes on the Request-URI only, and a
// value that could end it is refused.
func TestRouteURIParams(t *testing.T) {
	p := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p.uri()}}})
	route := Route{Trunk: "t", Headers: []routing.Header{{Name: "cic", Value: "0288", Param: true}}}
	if code := sendMessage(t, g, MessageOptions{Identity: "alice@example.com", Target: "+15551234", Route: route}); code != 200 {
		t.Fatalf("report %d", code)
	}
	r := p.next(t, sip.MESSAGE)
	if v, ok := r.Recipient.UriParams.Get("cic"); !ok || v != "0288" {
		t.Errorf("Request-URI %s: no cic=0288", r.Recipient.String())
	}
	if strings.Contains(r.To().Value(), "cic") || r.GetHeader("cic") != nil {
		t.Errorf("the parameter went elsewhere: To %s", r.To().Value())
	}
	for _, v := range []string{"a;transport=tcp", "a?Route=x", "a b", "", "a>"} {
		route.Headers[0].Value = v
		err := g.SendMessage(MessageOptions{Identity: "alice@example.com", Target: "+15551234", Route: route}, func(int, string, []Header) {})
		if ResponseCode(err) != 400 {
			t.Errorf("value %q: %v, want 400", v, err)
		}
	}
}

// REGISTER binds the AOR of the application's sip_identity (its Sender's
// From), not the identity's, and goes through the route's trunk, failing
// over from a proxy that answers 503 to the next, in the same Call-ID.
func TestRegisterIdentityAndFailover(t *testing.T) {
	p1 := newFakeProxy(t, func(sip.RequestMethod) int { return 503 })
	p2 := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p1.uri(), p2.uri()}}})
	reg, err := g.Register(context.Background(), "alice@example.com", &RegisterOptions{
		Route: Route{Trunk: "t", Sender: routing.Sender{From: "sip:alice@ims.example.net", AssertedIdentity: "sip:alice@ims.example.net"}}})
	if err != nil {
		t.Fatal(err)
	}
	first, second := p1.next(t, sip.REGISTER), p2.next(t, sip.REGISTER)
	if first.CallID().Value() != second.CallID().Value() {
		t.Errorf("Call-ID %s then %s", first.CallID().Value(), second.CallID().Value())
	}
	for _, r := range []*sip.Request{first, second} {
		if to, from := r.To().Address.String(), r.From().Address.String(); to != "sip:alice@ims.example.net" || from != to {
			t.Errorf("To %s, From %s: want the sip_identity's AOR", to, from)
		}
		if r.GetHeader("P-Asserted-Identity") != nil {
			t.Error("a REGISTER asserts no identity")
		}
	}
	if err := reg.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Register(context.Background(), "bob@example.com", &RegisterOptions{
		Route: Route{Sender: routing.Sender{From: "sip:bob@ims.example.net;transport=tcp"}}}); ResponseCode(err) != 400 {
		t.Errorf("a sip_identity with a parameter: %v, want 400", err)
	}
}

// PUBLISH states the AOR of the application's sip_identity and goes
// through the route's trunk, failing over from a proxy that answers 503,
// with the header rules for PUBLISH.
func TestPublishIdentityAndFailover(t *testing.T) {
	p1 := newFakeProxy(t, func(sip.RequestMethod) int { return 503 })
	p2 := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p1.uri(), p2.uri()}}})
	err := g.Publish(PublishOptions{Identity: "alice@example.com", Event: EventPresence, ContentType: "application/pidf+xml",
		Body: []byte("<presence/>"), Route: Route{Trunk: "t", Sender: routing.Sender{From: "sip:alice@ims.example.net"},
			Transform: mustRouting(t, `headers: [{header: X-Source, value: "web-{user}", methods: [PUBLISH]}, {header: X-Not, value: x, methods: [MESSAGE]}]`).
				Bind(routing.Request{Kind: routing.Publish, Identity: "alice@example.com", Target: "alice@example.com"})}})
	if err != nil {
		t.Fatal(err)
	}
	first, second := p1.next(t, sip.PUBLISH), p2.next(t, sip.PUBLISH)
	if first.CallID().Value() != second.CallID().Value() {
		t.Errorf("Call-ID %s then %s", first.CallID().Value(), second.CallID().Value())
	}
	if to, from, ruri := second.To().Address.String(), second.From().Address.String(), second.Recipient.String(); to != "sip:alice@ims.example.net" || from != to || ruri != to {
		t.Errorf("Request-URI %s, To %s, From %s: want the sip_identity's AOR", ruri, to, from)
	}
	if h := second.GetHeader("X-Source"); h == nil || h.Value() != "web-alice" || second.GetHeader("X-Not") != nil {
		t.Errorf("PUBLISH header rules: X-Source %v, X-Not %v", h, second.GetHeader("X-Not"))
	}
}

type subEvents struct{ accepted, ended chan string }

func (e subEvents) Accepted([]Header)                    { e.accepted <- "" }
func (e subEvents) Rejected(c int, r string, _ []Header) { e.accepted <- r }
func (e subEvents) Notify(string, []byte, []Header) (func(), error) {
	return func() {}, nil
}
func (e subEvents) Terminated(r string) { e.ended <- r }

// A SUBSCRIBE refresh whose proxy answers 503 goes, within the same
// dialog (no route set recorded), through the trunk's next proxy.
func TestSubscribeRefreshFailsOver(t *testing.T) {
	var n atomic.Int32
	p1 := newFakeProxy(t, func(m sip.RequestMethod) int {
		if m == sip.SUBSCRIBE && n.Add(1) > 1 {
			return 503
		}
		return 200
	})
	p2 := newFakeProxy(t, func(sip.RequestMethod) int { return 200 })
	g := startTrunks(t, map[string]routing.TrunkConfig{"t": {Proxies: []string{p1.uri(), p2.uri()}}})
	ev := subEvents{accepted: make(chan string, 1), ended: make(chan string, 1)}
	s, err := g.Subscribe(SubscribeOptions{Identity: "alice@example.com", Target: "bob@example.com", Event: EventPresence,
		Expiry: time.Second, Route: Route{Trunk: "t"}}, ev)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if r := <-ev.accepted; r != "" {
		t.Fatalf("rejected: %s", r)
	}
	initial, refresh := p1.next(t, sip.SUBSCRIBE), p1.next(t, sip.SUBSCRIBE)
	again := p2.next(t, sip.SUBSCRIBE)
	if again.CallID().Value() != initial.CallID().Value() || again.CallID().Value() != refresh.CallID().Value() {
		t.Errorf("the refresh left the dialog: Call-IDs %s, %s, %s", initial.CallID().Value(), refresh.CallID().Value(), again.CallID().Value())
	}
	tag, _ := refresh.To().Params.Get("tag")
	if again2, _ := again.To().Params.Get("tag"); tag == "" || again2 != tag {
		t.Errorf("the failed-over refresh is not in the dialog: To %s, the refresh's %s", again.To().Value(), refresh.To().Value())
	}
	select {
	case r := <-ev.ended:
		t.Fatalf("the subscription ended: %s", r)
	default:
	}
}
