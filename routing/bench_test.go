package routing

import (
	"net/netip"
	"testing"
)

// BenchmarkDecide routes a call past four rules to the fifth, as a
// gateway does for each call, message and subscription.
func BenchmarkDecide(b *testing.B) {
	r := mustRouter(b, trunks+`
rules:
  - {name: guests, from: {guest: true}, reject: {}}
  - {name: lan, from: {networks: [10.0.0.0/8]}, web: true}
  - {name: ext, to: {regex: '^[1-7][0-9]{3}$'}, trunk: a}
  - {name: online, to: {web_session: live}, web: true}
  - name: national
    to: {prefixes: ["0"]}
    rewrite: {e164: {country_code: "44", national_prefix: "0", international_prefix: "00"}}
    trunk: b
`)
	req := Request{Kind: Call, Application: "web", Identity: "alice@example.com", Source: netip.MustParseAddr("192.0.2.1"),
		Target: "020-7946-0000"}
	b.ReportAllocs()
	for b.Loop() {
		if d := r.Decide(req); d.Rule != "national" {
			b.Fatal(d.Rule)
		}
	}
}
