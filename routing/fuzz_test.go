package routing

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzDecide routes arbitrary targets, identities and addresses through
// every rule kind: nothing panics, Decide and Explain agree, and a
// rewritten target stays within the characters it came with plus the
// configured ones (a rewrite cannot smuggle a parameter or header).
func FuzzDecide(f *testing.F) {
	for _, s := range []string{"tel:+44-20", "sip:bob@ims.example.com", "0612345678", "conf-1@example.com",
		"+", "sip:", "tel:", "@", "a@b@c", "sip:;x=y@h", "0044\x00", "ext-123"} {
		f.Add(s, "alice@corp.example.com", []byte{10, 0, 0, 1}, uint8(0), true)
	}
	var c Config
	c.Trunks = map[string]TrunkConfig{"a": {Proxies: []string{"sip:127.0.0.1"}}}
	c.Rules = []RuleConfig{
		{Name: "app", From: OriginMatch{Applications: []string{"x"}}, ActionConfig: ActionConfig{Web: true}},
		{Name: "id", From: OriginMatch{Identity: []string{"*@corp.*"}, Networks: []string{"10.0.0.0/8"}},
			To: TargetMatch{Prefixes: []string{"0"}}, Rewrite: RewriteConfig{E164: &E164Config{CountryCode: "33", NationalPrefix: "0", InternationalPrefix: "00"}, Domain: "pstn.example.com"},
			ActionConfig: ActionConfig{Trunk: "a"}},
		{Name: "rx", To: TargetMatch{Regex: `^ext-\d+$`, Target: []string{"*"}}, Rewrite: RewriteConfig{StripPrefix: 4, AddPrefix: "9"}, ActionConfig: ActionConfig{Trunk: "a"}},
		{Name: "dom", To: TargetMatch{Domains: []string{"*.example.com"}, WebSession: "none"}, ActionConfig: ActionConfig{Reject: &RejectConfig{}}},
	}
	c.Headers = []HeaderRuleConfig{
		{Header: "X-A", To: TargetMatch{Regex: `^(\+?\d*)(.*)$`}, Value: "{1}|{2}|{ext:x}|{user}@{domain}"},
		{Header: "X-B", Value: "{target}"},
		{Header: "X-C", Value: "{ext:x}", Methods: []string{"BYE", "re-INVITE", "NOTIFY"}, On: "requests"},
	}
	c.ToWeb = []ToWebConfig{{Header: "X-C", Ext: "x-c", Methods: []string{"BYE"}}}
	r, err := New(c)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target, identity string, ip []byte, kind uint8, guest bool) {
		req := Request{Kind: Kind(kind % uint8(numKinds)), Target: target, Identity: identity, Guest: guest,
			Ext: map[string]string{"x": identity}}
		if a, ok := netip.AddrFromSlice(ip); ok {
			req.Source = a
		}
		d := r.Decide(req)
		e := r.Explain(req)
		for _, h := range d.Headers {
			if h.Name == "X-B" && h.Value != target {
				t.Fatalf("{target} gave %q for %q", h.Value, target)
			}
		}
		// Every later request and response of the dialog: the same
		// rules, the frame's extension headers as given, nothing else.
		for m := Method(0); m < numMethods; m++ {
			for _, resp := range []bool{false, true} {
				for _, h := range d.Transform.ToSIP(m, resp, map[string]string{"x": target}) {
					if (h.Name == "X-B" || h.Name == "X-C") && h.Value != target {
						t.Fatalf("%s: %s gave %q for %q", m, h.Name, h.Value, target)
					}
					if h.Name == "X-C" && (resp || (m != Bye && m != ReInvite && m != Notify)) {
						t.Fatalf("X-C on %s response=%v", m, resp)
					}
				}
				for _, h := range d.Transform.ToWeb(m, resp, func(string) (string, bool) { return identity, true }) {
					if h.Name != "x-c" || h.Value != identity || m != Bye {
						t.Fatalf("to_web on %s: %v", m, h)
					}
				}
			}
		}
		if d.String() != e.String() || d.Rule != e.Rule {
			t.Fatalf("Decide %q by %s, Explain %q by %s", d, d.Rule, e, e.Rule)
		}
		if d.Target != target && (d.Rule == "id" || d.Rule == "rx") {
			allowed := target + "+0123456789@.pstn.example.com:sip"
			for _, c := range d.Target {
				if !strings.ContainsRune(allowed, c) {
					t.Fatalf("rewrite of %q gave %q: %q came from nowhere", target, d.Target, c)
				}
			}
		}
	})
}
