package sipgw

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
	"go.yaml.in/yaml/v3"
)

func mustRouting(t *testing.T, src string) *routing.Router {
	t.Helper()
	var c routing.Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	r, err := routing.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWebHeaders: the to_web rules read the first header of each name,
// and none whose value could carry a line break to the web side.
func TestWebHeaders(t *testing.T) {
	x := mustRouting(t, `to_web: [{header: P-Asserted-Identity, ext: x-caller-id}, {header: X-Carrier, ext: x-carrier}, {header: X-Bad, ext: x-bad}]`).
		Bind(routing.Request{Identity: "alice"})
	res := sip.NewResponse(200, "OK")
	res.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:+15551234@example.com>"))
	res.AppendHeader(sip.NewHeader("X-Carrier", " c1 "))
	res.AppendHeader(sip.NewHeader("X-Carrier", "c2"))
	res.AppendHeader(sip.NewHeader("X-Bad", "a\u2028b"))
	res.AppendHeader(sip.NewHeader("X-Other", "no"))
	got := webHeaders(x, routing.Invite, true, res)
	want := []Header{{"x-caller-id", "<sip:+15551234@example.com>"}, {"x-carrier", "c1"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("webHeaders %v, want %v", got, want)
	}
	if webHeaders(nil, routing.Invite, true, res) != nil {
		t.Fatal("headers nobody asked for")
	}
}

// dialTransformed dials bob through g with the transformations x and
// returns the call, answered and ACKed, and its EventAnswered.
func dialTransformed(t *testing.T, g *UserAgent, x *routing.Transform) (*Call, Event) {
	t.Helper()
	ctx := context.Background()
	c, err := g.Dial(ctx, DialOptions{Identity: "alice@example.com", Target: "bob", SDP: []byte("v=0\r\n"), Route: Route{Transform: x}})
	if err != nil {
		t.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.Kind == EventEnded {
			t.Fatalf("ended before the answer: %+v", ev)
		}
		if ev.Kind == EventAnswered {
			if err := c.Ack(ctx, nil); err != nil {
				t.Fatal(err)
			}
			return c, ev
		}
	}
	t.Fatal("no answer")
	return nil, Event{}
}

// TestDialogTransforms: a call's header rules go on its in-dialog
// requests by method (the re-INVITE and the BYE, with the frame's
// extension header for {ext:NAME}), its to_web rules read the responses
// and the peer's requests; a value a frame brings that fails the header
// grammar refuses the request (400) and nothing is sent.
func TestDialogTransforms(t *testing.T) {
	g, bob := answeringPeer(t, func(req *sip.Request, res *sip.Response) {
		res.AppendHeader(sip.NewHeader("X-Carrier", "acme-"+string(req.Method)))
	})
	r := mustRouting(t, `
headers:
  - {header: X-Plan, value: gold, methods: [re-INVITE]}
  - {header: X-Reason, value: "{ext:x-why}", methods: [BYE]}
  - {header: X-Leg, value: "{application}", methods: [INVITE, BYE]}
to_web:
  - {header: X-Carrier, ext: x-carrier, methods: [INVITE]}
`)
	x := r.Bind(routing.Request{Application: "web", Identity: "alice@example.com", Target: "bob"})
	ctx := context.Background()
	c, ev := dialTransformed(t, g, x)
	if len(ev.Headers) != 1 || ev.Headers[0] != (Header{"x-carrier", "acme-INVITE"}) {
		t.Errorf("200's web headers %v", ev.Headers)
	}
	if inv := bob.next(t, sip.INVITE); inv.GetHeader("X-Plan") != nil {
		t.Errorf("the initial INVITE got the re-INVITE's rule")
	}
	if _, _, err := c.Reoffer(ctx, []byte("v=0\r\n")); err != nil {
		t.Fatal(err)
	}
	re := bob.next(t, sip.INVITE)
	if h := re.GetHeader("X-Plan"); h == nil || h.Value() != "gold" {
		t.Errorf("re-INVITE X-Plan %v", h)
	}
	if re.GetHeader("X-Leg") != nil || re.GetHeader("X-Reason") != nil {
		t.Errorf("re-INVITE got another method's rule")
	}
	// A value that would smuggle a header refuses the re-INVITE...
	if _, _, err := c.Reoffer(ctx, []byte("v=0\r\n"), Header{"x-plan", "x"}); err != nil {
		t.Fatal(err)
	}
	bob.next(t, sip.INVITE)
	r2 := mustRouting(t, `headers: [{header: X-Plan, value: "{ext:x-plan}", methods: [re-INVITE]}]`)
	c.xform = r2.Bind(routing.Request{Identity: "alice@example.com", Target: "bob"})
	if _, _, err := c.Reoffer(ctx, []byte("v=0\r\n"), Header{"x-plan", "a\r\nVia: smuggled"}); ResponseCode(err) != 400 {
		t.Fatalf("re-INVITE with a smuggling value: %v, want 400", err)
	}
	c.xform = x
	// ... while a hang-up goes all the same, without the header that
	// read the frame.
	if err := c.Hangup(ctx, Header{"x-why", "a\r\nVia: smuggled"}); err != nil {
		t.Fatal(err)
	}
	bye := bob.next(t, sip.BYE)
	if bye.GetHeader("X-Reason") != nil || bye.GetHeader("Via") == nil || len(bye.GetHeaders("Via")) != 1 {
		t.Errorf("BYE headers: X-Reason %v, Vias %d", bye.GetHeader("X-Reason"), len(bye.GetHeaders("Via")))
	}
	if h := bye.GetHeader("X-Leg"); h == nil || h.Value() != "web" {
		t.Errorf("BYE X-Leg %v", h)
	}
	select {
	case r := <-bob.got:
		t.Errorf("%s after the BYE", r.Method)
	default:
	}
}

// TestDialogTransformsBye: the BYE carries its rules, {ext:NAME} from the
// frame's extension headers.
func TestDialogTransformsBye(t *testing.T) {
	g, bob := answeringPeer(t, nil)
	x := mustRouting(t, `headers: [{header: X-Reason, value: "{ext:x-why}", methods: [BYE]}, {header: X-Leg, value: "{application}", methods: [INVITE, BYE], on: requests}]`).
		Bind(routing.Request{Application: "web", Identity: "alice@example.com", Target: "bob"})
	c, _ := dialTransformed(t, g, x)
	if err := c.Hangup(context.Background(), Header{"X-Why", "user hung up"}); err != nil {
		t.Fatal(err)
	}
	bye := bob.next(t, sip.BYE)
	if h := bye.GetHeader("X-Reason"); h == nil || h.Value() != "user hung up" {
		t.Errorf("BYE X-Reason %v", h)
	}
	if h := bye.GetHeader("X-Leg"); h == nil || h.Value() != "web" {
		t.Errorf("BYE X-Leg %v", h)
	}
}

// A rule's header replaces the one of its name already on the message
// (a client's, through calls.sip_headers), and leaves the others.
func TestTransformOutReplaces(t *testing.T) {
	x := mustRouting(t, `headers: [{header: X-App, value: "{application}", methods: [INVITE], on: responses}]`).
		Bind(routing.Request{Application: "web", Identity: "alice@example.com"})
	res := sip.NewResponse(200, "OK")
	res.AppendHeader(sip.NewHeader("X-App", "from-client"))
	res.AppendHeader(sip.NewHeader("X-Other", "kept"))
	if err := transformOut(x, routing.Invite, true, res, nil); err != nil {
		t.Fatal(err)
	}
	if hs := res.GetHeaders("X-App"); len(hs) != 1 || hs[0].Value() != "web" {
		t.Errorf("X-App %v, want the rule's alone", hs)
	}
	if h := res.GetHeader("X-Other"); h == nil || h.Value() != "kept" {
		t.Errorf("X-Other %v", h)
	}
}

// FuzzTransformOut puts the header rules of a call on a BYE and on a
// response with arbitrary frame extension headers, identities and
// targets (a regex capture of it): either the message is refused, or
// every rule header is there once, with the value the rule made, on one
// line of its own: no input adds a header, a line or a parameter.
func FuzzTransformOut(f *testing.F) {
	for _, s := range []string{"ok", "a\r\nVia: x", "a\nB: c", "<sip:x>", "a;b=c", "\u2028", "x\x00", "é", ""} {
		f.Add(s, "alice@example.com", "+4420"+s)
	}
	r, err := routing.New(routing.Config{Headers: []routing.HeaderRuleConfig{
		{Header: "X-A", Value: "{ext:x-a}", Methods: []string{"BYE"}},
		{Header: "X-B", Value: "id-{identity}-{1}", To: routing.TargetMatch{Regex: `^\+44(.*)$`}},
		{Param: "cic", Value: "{ext:x-a}", Methods: []string{"BYE"}},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value, identity, target string) {
		x := r.Bind(routing.Request{Identity: identity, Target: target})
		for _, resp := range []bool{false, true} {
			var msg sip.Message
			req := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"})
			req.AppendHeader(sip.NewHeader("X-App", "kept"))
			msg = req
			if resp {
				msg = sip.NewResponseFromRequest(req, 200, "OK", nil)
			}
			before := strings.Count(msg.String(), "\r\n")
			if err := transformOut(x, routing.Bye, resp, msg, []Header{{Name: "X-A", Value: value}}); err != nil {
				continue
			}
			want := map[string]string{}
			for _, h := range x.ToSIP(routing.Bye, resp, map[string]string{"x-a": value}) {
				if !h.Param && !h.Drop {
					want[h.Name] = h.Value
				}
			}
			out := msg.String()
			if n := strings.Count(out, "\r\n"); n != before+len(want) {
				t.Fatalf("%d lines, want %d + %d:\n%q", n, before, len(want), out)
			}
			for name, v := range want {
				hs := msg.GetHeaders(name)
				if len(hs) != 1 || hs[0].Value() != v || !strings.Contains(out, "\r\n"+name+": "+v+"\r\n") {
					t.Fatalf("%s: %v, want one %q:\n%q", name, hs, v, out)
				}
			}
			if strings.Contains(out, "cic") && !strings.Contains(value, "cic") && !strings.Contains(identity, "cic") && !strings.Contains(target, "cic") {
				t.Fatalf("a Request-URI parameter within the dialog:\n%q", out)
			}
		}
	})
}

// TestDialogResponseTransforms: the to_web rules read the responses to
// the call's in-dialog requests (the re-INVITE's 200, the REFER's 202 or
// failure), and the INFO of a digit takes the rules that read its
// frame's extension headers.
func TestDialogResponseTransforms(t *testing.T) {
	g, bob := answeringPeer(t, func(req *sip.Request, res *sip.Response) {
		res.AppendHeader(sip.NewHeader("X-Carrier", "acme-"+string(req.Method)))
		if h := req.GetHeader("Refer-To"); h != nil && strings.Contains(h.Value(), "nope") {
			res.StatusCode, res.Reason = 403, "Forbidden"
		}
	})
	x := mustRouting(t, `
headers: [{header: X-Digit, value: "d-{ext:x-digit}", methods: [INFO]}]
to_web: [{header: X-Carrier, ext: x-carrier, methods: [re-INVITE, REFER, INFO], on: responses}]
`).Bind(routing.Request{Identity: "alice@example.com", Target: "bob"})
	ctx := context.Background()
	c, ev := dialTransformed(t, g, x)
	if len(ev.Headers) != 0 {
		t.Errorf("the INVITE's 200 got %v: the rule is for re-INVITE", ev.Headers)
	}
	carrier := func(what string, hs []Header, want string) {
		t.Helper()
		if len(hs) != 1 || hs[0] != (Header{"x-carrier", want}) {
			t.Errorf("%s: headers %v, want x-carrier: %s", what, hs, want)
		}
	}
	_, hs, err := c.Reoffer(ctx, []byte("v=0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	carrier("re-INVITE's 200", hs, "acme-INVITE")
	if err := c.SendDTMF(ctx, "5", 0, Header{"X-Digit", "five"}); err != nil {
		t.Fatal(err)
	}
	if h := bob.next(t, sip.INFO).GetHeader("X-Digit"); h == nil || h.Value() != "d-five" {
		t.Errorf("INFO X-Digit %v", h)
	}
	hs, err = c.Transfer(ctx, "sip:carol@example.com")
	if err != nil {
		t.Fatal(err)
	}
	carrier("REFER's 2xx", hs, "acme-REFER")
	var re *ResponseError
	if _, err := c.Transfer(ctx, "sip:nope@example.com"); !errors.As(err, &re) || re.Code != 403 {
		t.Fatalf("refused REFER: %v", err)
	}
	carrier("REFER's 403", re.Headers, "acme-REFER")
}

// TestDialogPeerRequestResponses: the header rules `on: responses` go on
// the gateway's answers to the peer's requests in a call, those it
// builds itself (a DTMF INFO's 200) and
// the BYE's 200 that sipgo sends.
func TestDialogPeerRequestResponses(t *testing.T) {
	g, bob := answeringPeer(t, nil)
	x := mustRouting(t, `headers: [{header: X-Served, value: "{application}", methods: [INFO, BYE, REFER], on: responses},
  {header: X-Why, value: "{ext:x-why}", methods: [REFER], on: responses}]`).
		Bind(routing.Request{Application: "web", Identity: "alice@example.com", Target: "bob"})
	c, _ := dialTransformed(t, g, x)
	k := c.Keys()
	from, to := "<sip:bob@example.com>;tag=far", "<sip:alice@example.com>;tag="+k.LocalTag
	served := func(what string, res *sip.Response, code int) {
		t.Helper()
		if res.StatusCode != code {
			t.Fatalf("%s: %d %s, want %d", what, res.StatusCode, res.Reason, code)
		}
		if h := res.GetHeader("X-Served"); h == nil || h.Value() != "web" {
			t.Errorf("%s: X-Served %v, want web", what, h)
		}
	}
	ruri := "sip:alice@" + g.Addr("udp")
	res := bob.send(t, g.Addr("udp"), bob.rawRequest("INFO", ruri, from, to, k.CallID, 1,
		"Content-Type: application/dtmf-relay\r\n", "Signal=5\r\nDuration=160\r\n"))
	served("INFO's 200", res, 200)
	// A REFER the web side accepts: the 202 gets its frame's {ext:}.
	go func() {
		for ev := range c.Events() {
			if ev.Kind == EventRefer {
				_ = ev.Refer.Accept(Header{"X-Why", "agreed"})
			}
		}
	}()
	res = bob.send(t, g.Addr("udp"), bob.rawRequest("REFER", ruri, from, to, k.CallID, 2,
		"Refer-To: <sip:carol@example.com>\r\n", ""))
	served("REFER's 202", res, 202)
	if h := res.GetHeader("X-Why"); h == nil || h.Value() != "agreed" {
		t.Errorf("REFER's 202 X-Why %v, want the web answer's", h)
	}
	res = bob.send(t, g.Addr("udp"), bob.rawRequest("BYE", ruri, from, to, k.CallID, 3, "", ""))
	served("BYE's 200", res, 200)
}
