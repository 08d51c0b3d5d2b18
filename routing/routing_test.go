package routing

import (
	"net/netip"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func mustRouter(t testing.TB, src string) *Router {
	t.Helper()
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const trunks = `
trunks:
  a: {proxies: ["sip:127.0.0.1:5061"]}
  b: {proxies: ["sip:127.0.0.1:5062", "sip:127.0.0.1:5063;transport=tcp"]}
`

type routeCase struct {
	name string
	req  Request
	want string // Decision.String()
	rule string
}

func runCases(t *testing.T, r *Router, cases []routeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := r.Decide(c.req)
			if d.String() != c.want || d.Rule != c.rule {
				t.Errorf("Decide(%+v) = %q by %q, want %q by %q", c.req, d.String(), d.Rule, c.want, c.rule)
			}
			e := r.Explain(c.req)
			if e.String() != d.String() || e.Rule != d.Rule {
				t.Errorf("Explain decided %q by %q, Decide %q by %q", e.String(), e.Rule, d.String(), d.Rule)
			}
			if n := len(e.Steps); n == 0 || !e.Steps[n-1].Matched || e.Steps[n-1].Rule != d.Rule {
				t.Errorf("steps %+v do not end with the deciding rule", e.Steps)
			}
		})
	}
}

const builtin = "builtin (web identity -> web relay; sip:, sips:, tel:, number, SIP domain -> sip.outbound_proxy)"

func TestKindRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: msgs, for: [message], trunk: a}
  - {name: subs, for: [subscribe, call], trunk: b}
`)
	runCases(t, r, []routeCase{
		{"message", Request{Kind: Message, Target: "bob"}, "sip trunk a, target bob", "msgs"},
		{"subscribe", Request{Kind: Subscribe, Target: "bob"}, "sip trunk b, target bob", "subs"},
		{"call", Request{Kind: Call, Target: "bob"}, "sip trunk b, target bob", "subs"},
	})
}

func TestApplicationRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: pbx, from: {applications: [office]}, trunk: a}
`)
	runCases(t, r, []routeCase{
		{"listed", Request{Application: "office", Target: "100"}, "sip trunk a, target 100", "pbx"},
		{"other", Request{Application: "web", Target: "100"}, builtin, "default"},
	})
}

func TestIdentityRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: staff, from: {identity: ["*@corp.example.com", "admin"]}, trunk: a}
`)
	runCases(t, r, []routeCase{
		{"pattern", Request{Identity: "Alice@Corp.Example.com", Target: "x"}, "sip trunk a, target x", "staff"},
		{"exact", Request{Identity: "admin", Target: "x"}, "sip trunk a, target x", "staff"},
		{"subdomain is not the domain", Request{Identity: "alice@evil.corp.example.com.org", Target: "x"}, builtin, "default"},
		{"other", Request{Identity: "bob@example.com", Target: "x"}, builtin, "default"},
	})
}

func TestGuestRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: sales, from: {guest: true}, to: {target: [sales@example.com]}, web: true}
  - {name: guests, from: {guest: true}, reject: {code: 403, reason: guests call sales only}}
  - {name: members, from: {guest: false}, trunk: a}
`)
	runCases(t, r, []routeCase{
		{"guest to sales", Request{Guest: true, Target: "sip:Sales@example.com"}, "web, target sip:Sales@example.com", "sales"},
		{"guest elsewhere", Request{Guest: true, Target: "+15551234"}, "reject 403 guests call sales only", "guests"},
		{"member", Request{Target: "+15551234"}, "sip trunk a, target +15551234", "members"},
	})
}

func TestNetworkRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: lan, from: {networks: [10.0.0.0/8, "fd00::/8"]}, trunk: a}
`)
	runCases(t, r, []routeCase{
		{"v4", Request{Source: netip.MustParseAddr("10.1.2.3"), Target: "x"}, "sip trunk a, target x", "lan"},
		{"v4 in v6", Request{Source: netip.MustParseAddr("::ffff:10.1.2.3"), Target: "x"}, "sip trunk a, target x", "lan"},
		{"v6", Request{Source: netip.MustParseAddr("fd00::1"), Target: "x"}, "sip trunk a, target x", "lan"},
		{"outside", Request{Source: netip.MustParseAddr("192.0.2.1"), Target: "x"}, builtin, "default"},
		{"unknown", Request{Target: "x"}, builtin, "default"},
	})
}

func TestTargetRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: conf, to: {target: ["conf-*@example.com"]}, trunk: a}
  - {name: rx, to: {regex: '^ext-[0-9]{3}$'}, trunk: b}
`)
	runCases(t, r, []routeCase{
		{"glob", Request{Target: "conf-12@example.com"}, "sip trunk a, target conf-12@example.com", "conf"},
		{"glob with scheme", Request{Target: "sips:CONF-1@example.com"}, "sip trunk a, target sips:CONF-1@example.com", "conf"},
		{"regex", Request{Target: "ext-123"}, "sip trunk b, target ext-123", "rx"},
		{"regex anchored", Request{Target: "ext-1234"}, builtin, "default"},
	})
}

func TestDomainRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: ims, to: {domains: [ims.example.com, "*.pbx.example.com"]}, trunk: a}
`)
	runCases(t, r, []routeCase{
		{"exact", Request{Target: "sip:bob@IMS.example.com"}, "sip trunk a, target sip:bob@IMS.example.com", "ims"},
		{"wildcard", Request{Target: "bob@site1.pbx.example.com"}, "sip trunk a, target bob@site1.pbx.example.com", "ims"},
		{"wildcard is not the domain", Request{Target: "bob@pbx.example.com"}, builtin, "default"},
		{"no domain", Request{Target: "tel:+1555"}, builtin, "default"},
	})
}

func TestPrefixRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: uk, to: {prefixes: ["+44", "0044"]}, trunk: a}
  - {name: local, to: {prefixes: ["0"]}, trunk: b}
`)
	runCases(t, r, []routeCase{
		{"tel", Request{Target: "tel:+44-20-7946"}, "sip trunk a, target tel:+44-20-7946", "uk"},
		{"bare", Request{Target: "0044207946"}, "sip trunk a, target 0044207946", "uk"},
		{"sip user", Request{Target: "sip:+44207946@trunk.example.com"}, "sip trunk a, target sip:+44207946@trunk.example.com", "uk"},
		{"local", Request{Target: "0612345678"}, "sip trunk b, target 0612345678", "local"},
		{"not a number", Request{Target: "0bob@example.com"}, builtin, "default"},
	})
}

func TestWebSessionRule(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: online, to: {web_session: live}, web: true}
  - {name: offline, to: {web_session: none, domains: [example.com]}, trunk: a}
`)
	runCases(t, r, []routeCase{
		{"live", Request{Target: "bob@example.com", WebLive: true}, "web, target bob@example.com", "online"},
		{"offline to voicemail", Request{Target: "bob@example.com"}, "sip trunk a, target bob@example.com", "offline"},
	})
}

func TestRewrite(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: intl, to: {prefixes: ["00"]}, rewrite: {e164: {country_code: "1", international_prefix: "00"}}, trunk: a}
  - name: fr
    to: {prefixes: ["0", "+33"]}
    rewrite: {e164: {country_code: "33", national_prefix: "0", international_prefix: "00"}, domain: pstn.example.com}
    trunk: a
  - {name: strip, to: {prefixes: ["9"]}, rewrite: {strip_prefix: 1, add_prefix: "0"}, trunk: b}
  - {name: move, to: {domains: [old.example.com]}, rewrite: {domain: new.example.com}, web: true}
`)
	runCases(t, r, []routeCase{
		{"national to e164", Request{Target: "06.12.34.56.78"}, "sip trunk a, target +33612345678@pstn.example.com", "fr"},
		{"e164 kept", Request{Target: "tel:+33-1-23"}, "sip trunk a, target sip:+33123@pstn.example.com", "fr"},
		{"strip and add", Request{Target: "9555"}, "sip trunk b, target 0555", "strip"},
		{"domain", Request{Target: "sip:bob@old.example.com"}, "web, target sip:bob@new.example.com", "move"},
		{"international", Request{Target: "0044123"}, "sip trunk a, target +44123", "intl"},
	})
}

func TestDefaultAction(t *testing.T) {
	r := mustRouter(t, trunks+`
default: {reject: {code: 404}}
`)
	runCases(t, r, []routeCase{
		{"reject", Request{Target: "x"}, "reject 404 refused by routing rule default", "default"},
	})
	r = mustRouter(t, trunks+"default: {trunk: b}\n")
	runCases(t, r, []routeCase{{"trunk", Request{Target: "x"}, "sip trunk b, target x", "default"}})
}

func TestExplainSaysWhy(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: office, from: {applications: [office]}, trunk: a}
  - {name: uk, to: {prefixes: ["+44"]}, trunk: a}
  - {name: rest, trunk: b}
`)
	d := r.Explain(Request{Application: "web", Target: "+331"})
	want := []Step{
		{Rule: "office", Why: `from.applications: "web" is not one of ["office"]`},
		{Rule: "uk", Why: `to.prefixes: +331 starts with none of ["+44"]`},
		{Rule: "rest", Matched: true, Why: "sip trunk b, target +331"},
	}
	if len(d.Steps) != len(want) {
		t.Fatalf("steps %+v", d.Steps)
	}
	for i := range want {
		if d.Steps[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, d.Steps[i], want[i])
		}
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	cases := []struct{ src, want string }{
		{"rules: [{name: x}]", "routing.rules[0]: no action"},
		{"rules: [{web: true, trunk: a}]", "routing.rules[0]: set one of"},
		{"rules: [{trunk: nope}]", `routing.rules[0].trunk: "nope" is not in routing.trunks`},
		{"rules: [{for: [fax], web: true}]", "routing.rules[0].for[0]"},
		{"rules: [{from: {networks: [10.0.0.0/40]}, web: true}]", "routing.rules[0].from.networks[0]"},
		{"rules: [{to: {regex: '('}, web: true}]", "routing.rules[0].to.regex"},
		{"rules: [{to: {prefixes: [abc]}, web: true}]", "routing.rules[0].to.prefixes[0]"},
		{"rules: [{to: {domains: ['a b']}, web: true}]", "routing.rules[0].to.domains[0]"},
		{"rules: [{to: {web_session: maybe}, web: true}]", "routing.rules[0].to.web_session"},
		{"rules: [{rewrite: {e164: {country_code: x}}, web: true}]", "routing.rules[0].rewrite.e164.country_code"},
		{"rules: [{rewrite: {domain: 'a;b'}, web: true}]", "routing.rules[0].rewrite.domain"},
		{"rules: [{rewrite: {add_prefix: '1;x'}, web: true}]", "routing.rules[0].rewrite.add_prefix"},
		{"rules: [{reject: {code: 200}}]", "routing.rules[0].reject.code"},
		{"rules: [{rewrite: {strip_prefix: 1}, reject: {}}]", "routing.rules[0].rewrite"},
		{"rules: [{name: a, web: true}, {name: a, web: true}]", "routing.rules[1].name"},
		{"trunks: {t: {}}", "routing.trunks.t.proxies"},
		{"trunks: {t: {proxies: ['sip:a@b']}}", "routing.trunks.t.proxies[0]"},
		{"trunks: {t: {proxies: ['sip:b;lr']}}", "routing.trunks.t.proxies[0]"},
		{"trunks: {t: {proxies: ['http://b']}}", "routing.trunks.t.proxies[0]"},
		{"trunks: {t: {proxies: ['sip:b'], health_interval: 10ms}}", "routing.trunks.t.health_interval"},
		{"trunks: {t: {proxies: ['sip:b'], health_interval: 1s, health_timeout: 2s}}", "routing.trunks.t.health_timeout"},
		{"default: {web: true, reject: {}}", "routing.default"},
	}
	for _, c := range cases {
		var cfg Config
		if err := yaml.Unmarshal([]byte(c.src), &cfg); err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.src, err, c.want)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("the empty config: %v", err)
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"*c", "abc", true}, {"a*c", "ac", true},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"abc", "abd", false},
		{"*@x.com", "a@x.com.evil", false}, {strings.Repeat("*a", 20), strings.Repeat("a", 40) + "b", false},
	}
	for _, c := range cases {
		if got := glob(c.p, c.s); got != c.want {
			t.Errorf("glob(%q, %q) = %v", c.p, c.s, got)
		}
	}
}
