package routing

import (
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestHeaderRules(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: online, to: {web_session: live}, web: true}
  - {name: uk, to: {prefixes: ["+44"]}, trunk: a}
headers:
  - {name: constant, header: X-Gateway, value: jsonrtc}
  - {name: who, header: X-Caller, value: "{user} at {domain} via {application}"}
  - {name: area, to: {regex: '^\+44(\d{2})(\d+)$'}, header: X-Area, value: "{1}/{2}"}
  - {name: rename, header: X-Account, value: "acct-{ext:x-account}"}
  - {name: staff-only, from: {identity: ["*@corp.example.com"]}, for: [call], header: X-Staff, value: "{identity}"}
  - {name: no-debug, for: [message], header: X-Debug, drop: true}
  - {name: cic, to: {prefixes: ["+1"]}, param: cic, value: "{ext:x-cic}"}
`)
	cases := []struct {
		name string
		req  Request
		want []Header
	}{
		{"all that match", Request{Application: "web", Identity: "alice@corp.example.com", Target: "+442079",
			Ext: map[string]string{"x-account": "42"}}, []Header{
			{Name: "X-Gateway", Value: "jsonrtc"}, {Name: "X-Caller", Value: "alice at corp.example.com via web"}, {Name: "X-Area", Value: "20/79"},
			{Name: "X-Account", Value: "acct-42"}, {Name: "X-Staff", Value: "alice@corp.example.com"}}},
		{"missing placeholders set nothing", Request{Kind: Message, Identity: "bob", Target: "+15551234"}, []Header{
			{Name: "X-Gateway", Value: "jsonrtc"}, {Name: "X-Debug", Value: "", Drop: true}}},
		{"uri parameter", Request{Kind: Message, Identity: "bob", Target: "+15551234", Ext: map[string]string{"x-cic": "0288"}}, []Header{
			{Name: "X-Gateway", Value: "jsonrtc"}, {Name: "X-Debug", Drop: true}, {Name: "cic", Value: "0288", Param: true}}},
		{"web relay gets none", Request{Identity: "alice@corp.example.com", Target: "+442079", WebLive: true}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := r.Decide(c.req).Headers; !reflect.DeepEqual(got, c.want) {
				t.Errorf("headers %v, want %v", got, c.want)
			}
		})
	}
}

func TestToWeb(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"to_web: [{header: 'X C', ext: x-c}]", "routing.to_web[0].header"},
		{"to_web: [{header: X-C, ext: target}]", "routing.to_web[0].ext"},
		{"to_web: [{header: X-C, ext: 'x-a b'}]", "routing.to_web[0].ext"},
		{"to_web: [{header: X-C, ext: x-c}, {header: x-c, ext: x-d}]", "routing.to_web[1].header"},
		{"to_web: [{header: Proxy-Authorization, ext: x-c}]", "routing.to_web[0].header: \"Proxy-Authorization\" carries credentials"},
		{"to_web: [{header: X-C, ext: x-c, methods: [BYE, FAX]}]", "routing.to_web[0].methods[1]: \"FAX\""},
		{"to_web: [{header: X-C, ext: x-c, on: both}]", "routing.to_web[0].on"},
	} {
		var cfg Config
		if err := yaml.Unmarshal([]byte(c.src), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.src, err, c.want)
		}
	}
}

func TestHeaderRuleErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"headers: [{header: X-A}]", "routing.headers[0].value: required"},
		{"headers: [{header: X-A, value: v, drop: true}]", "routing.headers[0].value: a dropped header has no value"},
		{"headers: [{param: transport, value: tcp}]", "routing.headers[0].param"},
		{"headers: [{param: cic, header: X-A, value: v}]", "routing.headers[0].param: set header or param"},
		{"headers: [{header: 'X A', value: v}]", "routing.headers[0].header"},
		{"headers: [{header: X-A, value: '{nope}'}]", "routing.headers[0].value: {nope}"},
		{"headers: [{header: X-A, value: '{1}'}]", "to.regex has 0 groups"},
		{"headers: [{header: X-A, value: 'a}b'}]", "unbalanced"},
		{"headers: [{header: X-A, value: \"a\\x01\"}]", "control"},
		{"headers: [{header: X-A, value: v, for: [fax]}]", "routing.headers[0].for[0]"},
		{"headers: [{header: X-A, value: v, methods: [OPTIONS]}]", "routing.headers[0].methods[0]"},
		{"headers: [{header: X-A, value: v, on: request}]", "routing.headers[0].on"},
	} {
		var cfg Config
		if err := yaml.Unmarshal([]byte(c.src), &cfg); err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.src, err, c.want)
		}
	}
}
