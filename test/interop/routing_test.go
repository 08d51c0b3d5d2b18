package interop

import (
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Routing profiles end to end (docs/routing.md): a web client calls
// through the gateway, whose routing rules pick a trunk by prefix; SIPp
// UASes stand for the trunks' proxies (SBCs), Kamailio for a proxy that
// answers OPTIONS and relays to SIPp.

// routed configures the gateway's routing section and an open
// application "test" whose sip_identity puts the user in the IMS domain
// and asserts it (P-Asserted-Identity).
func routed(trunks map[string]routing.TrunkConfig, rules ...routing.RuleConfig) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.Routing.Trunks, c.Routing.Rules = trunks, rules
		c.Auth.Applications = []auth.AppConfig{{Name: "test", Mode: auth.ModeOpen,
			Origins:     auth.OriginConfig{AllowMissing: true},
			SIPIdentity: auth.SIPIdentityConfig{Template: "sip:{user}@ims.example.com", Assert: auth.AssertAsserted}}}
	}
}

func proxyOf(s *Sipp) string { return "sip:127.0.0.1:" + strconv.Itoa(s.Port) }

// receivedInvite returns the INVITE SIPp's -trace_msg log shows it
// received, once SIPp has ended.
func receivedInvite(t *testing.T, s *Sipp) string { return receivedRequest(t, s, "INVITE", 0) }

// receivedRequest returns the n-th (from 0) request of method SIPp's
// -trace_msg log shows it received, once SIPp has ended.
func receivedRequest(t *testing.T, s *Sipp, method string, n int) string {
	t.Helper()
	log, err := readLog(s.Dir, "*messages.log")
	if err != nil {
		t.Fatal(err)
	}
	from := 0
	for k := 0; ; k++ {
		i := strings.Index(log[from:], "\n"+method+" sip:")
		if i < 0 {
			t.Fatalf("no %s #%d in %s's log:\n%s", method, n, s.name, tail(log, 3000))
		}
		i += from + 1
		end := strings.Index(log[i:], "\n\n")
		if end < 0 {
			end = len(log) - i
		}
		if k == n {
			return log[i : i+end]
		}
		from = i + end
	}
}

func callFails(t *testing.T, a *client.Client, target string, code int, ext ...protocol.Ext) {
	t.Helper()
	if _, err := a.StartCall(ctxT(t), target, offer, ext...); err != nil {
		t.Fatal(err)
	}
	for {
		ev := webNext(t, a, client.EventCall)
		switch ev.CallEvent {
		case client.CallRinging, client.CallEarlyMedia:
			continue
		case client.CallFailed:
			if ev.Code != code {
				t.Fatalf("call to %s failed with %d %s, want %d", target, ev.Code, ev.Reason, code)
			}
			return
		}
		t.Fatalf("call to %s: event %v (code %d), want failed %d", target, ev.CallEvent, ev.Code, code)
	}
}

// Calls go by prefix to two trunks; the first rule's rewrite (E.164 and
// the trunk's domain) is what SIPp receives, with the From and
// P-Asserted-Identity of the application's template, never the client's.
func TestRoutingByPrefixRewriteAndIdentity(t *testing.T) {
	k := startKamailio(t)
	uk, fr := startSipp(t, "uas_busy.xml", ""), startSipp(t, "uas_busy.xml", "")
	w := startWebGateway(t, k, routed(
		map[string]routing.TrunkConfig{"uk": {Proxies: []string{proxyOf(uk)}}, "fr": {Proxies: []string{proxyOf(fr)}}},
		routing.RuleConfig{Name: "uk", To: routing.TargetMatch{Prefixes: []string{"+44", "0044"}},
			Rewrite: routing.RewriteConfig{E164: &routing.E164Config{CountryCode: "44", InternationalPrefix: "00", NationalPrefix: "0"},
				Domain: "trunk-uk.example"},
			ActionConfig: routing.ActionConfig{Trunk: "uk"}},
		routing.RuleConfig{Name: "fr", To: routing.TargetMatch{Prefixes: []string{"+33"}}, ActionConfig: routing.ActionConfig{Trunk: "fr"}},
	), func(c *gateway.Config) {
		c.Routing.Headers = []routing.HeaderRuleConfig{
			{Name: "account", Header: "X-Account", Value: "acct-{ext:x-account}"},
			{Name: "area", To: routing.TargetMatch{Regex: `^0044-(\d+)-`}, Header: "X-Area", Value: "{1}"},
			{Name: "carrier-select", To: routing.TargetMatch{Prefixes: []string{"+33"}}, Param: "cic", Value: "0033"},
		}
	})
	a := w.connect(t, "open@"+domain, nil)
	callFails(t, a, "0044-20-7946", 486,
		protocol.Ext{Name: "P-Asserted-Identity", Value: "<sip:ceo@evil.example>"},
		protocol.Ext{Name: "X-App", Value: "kept"}, protocol.Ext{Name: "x-account", Value: "42"})
	uk.expectSuccess(t)
	callFails(t, a, "+331234", 486)
	fr.expectSuccess(t)

	inv := receivedInvite(t, uk)
	for _, want := range []string{
		"INVITE sip:+44207946@trunk-uk.example SIP/2.0",
		"P-Asserted-Identity: <sip:open@ims.example.com>",
		"From: <sip:open@ims.example.com>;tag=",
		"X-App: kept",
		"X-Account: acct-42",
		"X-Area: 20",
	} {
		if !strings.Contains(inv, want) {
			t.Errorf("the INVITE at trunk uk lacks %q:\n%s", want, inv)
		}
	}
	if strings.Contains(inv, "evil") || strings.Count(inv, "P-Asserted-Identity") != 1 {
		t.Errorf("the client's P-Asserted-Identity reached SIP:\n%s", inv)
	}
	if inv := receivedInvite(t, fr); !strings.Contains(inv, "INVITE sip:+331234@"+domain+";user=phone;cic=0033 SIP/2.0") ||
		strings.Count(inv, "cic=") != 1 {
		t.Errorf("the INVITE at trunk fr (the rule's cic on the Request-URI alone):\n%s", inv)
	}
}

// A trunk's first proxy answers 503: the INVITE goes to the second.
func TestRoutingFailoverOn503(t *testing.T) {
	k := startKamailio(t)
	down, busy := startSipp(t, "uas_unavailable.xml", ""), startSipp(t, "uas_busy.xml", "")
	w := startWebGateway(t, k, routed(
		map[string]routing.TrunkConfig{"pstn": {Proxies: []string{proxyOf(down), proxyOf(busy)}}},
		routing.RuleConfig{Name: "nanp", To: routing.TargetMatch{Prefixes: []string{"+1"}}, ActionConfig: routing.ActionConfig{Trunk: "pstn"}},
	))
	a := w.connect(t, "open@"+domain, nil)
	callFails(t, a, "+15551234", 486)
	down.expectSuccess(t)
	busy.expectSuccess(t)
}

// A trunk's first proxy does not answer OPTIONS: once the health checks
// mark it down, calls go straight to the second, Kamailio, which relays
// to the SIPp UAS.
func TestRoutingSkipsProxyDownByOptions(t *testing.T) {
	k := startKamailio(t)
	busy := startSipp(t, "uas_busy.xml", "")
	silent, invites := silentPeer(t)
	dead := "sip:" + silent
	w := startWebGateway(t, k, routed(
		map[string]routing.TrunkConfig{"core": {Proxies: []string{dead, "sip:" + k.Addr},
			HealthInterval: time.Second, HealthTimeout: 300 * time.Millisecond}},
		routing.RuleConfig{Name: "uas", To: routing.TargetMatch{Target: []string{"uas-*@" + domain}}, ActionConfig: routing.ActionConfig{Trunk: "core"}},
	))
	until(t, "the dead proxy to be marked down", func() bool {
		st := w.g.TrunkStatus("core")
		return len(st) == 2 && !st[0].Up && st[1].Up
	})
	rec := httptest.NewRecorder()
	w.g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`jsonrtc_sip_trunk_proxy_up{proxy="` + dead + `",trunk="core"} 0`,
		`jsonrtc_sip_trunk_proxy_up{proxy="sip:` + k.Addr + `",trunk="core"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	a := w.connect(t, "open@"+domain, nil)
	callFails(t, a, uasTarget(busy), 486)
	busy.expectSuccess(t)
	if n := invites.Load(); n != 0 {
		t.Errorf("the proxy marked down got %d INVITEs", n)
	}
}

// silentPeer is a UDP address that reads everything and answers nothing
// (a proxy that is down), counting the INVITEs it gets.
func silentPeer(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var invites atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:n]), "INVITE ") {
				invites.Add(1)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String(), &invites
}

// A reload while a call is up drops nothing: the call goes on and ends
// as it began (through Kamailio, by the built-in profile), the session
// stays, and the next call follows the new rules.
func TestRoutingReloadDuringCall(t *testing.T) {
	k := startKamailio(t)
	answer := startSipp(t, "uas_answer.xml", "")
	var cfg gateway.Config
	w := startWebGateway(t, k, routed(nil), func(c *gateway.Config) { cfg = *c })
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(answer), offer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)

	cfg.Routing.Rules = []routing.RuleConfig{{Name: "closed", To: routing.TargetMatch{Target: []string{"uas-*@" + domain}},
		ActionConfig: routing.ActionConfig{Reject: &routing.RejectConfig{Code: 403, Reason: "closed for the night"}}}}
	if restart, err := w.g.Reload(cfg); err != nil || len(restart) > 0 {
		t.Fatalf("reload: %v (restart-only sections changed: %v)", err, restart)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	answer.expectSuccess(t) // the BYE of the call routed before the reload
	callFails(t, a, uasTarget(answer), 403)
	if st := w.g.Stats(); st.Sessions != 1 {
		t.Fatalf("sessions %d after the reload, want 1", st.Sessions)
	}
}

// A SIP header of the 200 named by routing.to_web reaches the web caller
// as an extension header of the answer.
func TestRoutingHeaderToWeb(t *testing.T) {
	k := startKamailio(t)
	uas := startSipp(t, "uas_answer_carrier.xml", "")
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Routing.ToWeb = []routing.ToWebConfig{{Header: "X-Carrier", Ext: "x-carrier"}}
	})
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	ev := webAnswered(t, a)
	if ev.Header == nil {
		t.Fatal("the answer event has no header")
	}
	if x, ok := ev.Header.ExtValue("x-carrier"); !ok || x.Value != "carrier-7" {
		t.Errorf("answer extension headers %+v: no x-carrier: carrier-7", ev.Header.Ext)
	}
	webExpect(t, a, client.CallEstablished)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// A SIP header of an incoming MESSAGE named by routing.to_web reaches
// the web user as an extension header of the message.
func TestRoutingMessageHeaderToWeb(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Routing.ToWeb = []routing.ToWebConfig{{Header: "X-Carrier", Ext: "x-carrier"}}
	})
	a := w.connect(t, "open@"+domain, nil) // registered at Kamailio
	uac := startSipp(t, "uac_message_carrier.xml", k.Addr, "-s", "open")
	m := webNext(t, a, client.EventMessage).Message
	if x, ok := m.Header.ExtValue("x-carrier"); !ok || x.Value != "carrier-9" {
		t.Errorf("message extension headers %+v: no x-carrier: carrier-9", m.Header.Ext)
	}
	if err := m.Reply(ctxT(t), 200); err != nil {
		t.Fatal(err)
	}
	uac.expectSuccess(t)
}
