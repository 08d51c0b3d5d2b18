package sipgw

import (
	"errors"
	"strings"
	"testing"
)

func testGateway(t *testing.T) *UserAgent {
	t.Helper()
	g, err := New(Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", TelDomain: "trunk.example.net",
		IdentityDomains: map[string]string{"corp.example": "sip.corp.example"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestParseTarget(t *testing.T) {
	g := testGateway(t)
	good := map[string]string{
		"bob@example.com":     "sip:bob@example.com",
		"sip:bob@example.com": "sip:bob@example.com",
		"bob":                 "sip:bob@example.com",
		"tel:+1-555-123-4567": "sip:+15551234567@trunk.example.net;user=phone",
		"+15551234567":        "sip:+15551234567@trunk.example.net;user=phone",
		"alice@corp.example":  "sip:alice@sip.corp.example",
	}
	for in, want := range good {
		u, err := g.ParseTarget(in)
		if err != nil || u.String() != want {
			t.Errorf("%q: %v %q, want %q", in, err, u.String(), want)
		}
	}
	bad := []string{
		"", "bob@example.com\r\nVia: x", "bob@example.com\x00", "sip:bob@example.com;transport=tcp",
		"sip:bob@example.com?Route=evil", "<sip:bob@example.com>", "bob@example.com>;tag=1",
		"bob,carol@example.com", "sip:bob:pw@example.com", "sip:bob@example.com:5060", "bob@exa mple.com",
		"\"bob\"@example.com", "http://example.com", "tel:+1555;phone-context=x", "bob@-bad-.com",
		strings.Repeat("a", 300) + "@example.com",
	}
	for _, in := range bad {
		if u, err := g.ParseTarget(in); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%q accepted as %q (%v)", in, u.String(), err)
		}
	}
}

func TestValidateHeaderAndDisplayName(t *testing.T) {
	for _, h := range []Header{{"X-App", "a b"}, {"Subject", "hi"}} {
		if err := ValidateHeader(h); err != nil {
			t.Errorf("%v: %v", h, err)
		}
	}
	for _, h := range []Header{{"X-App", "a\r\nVia: evil"}, {"Via", "x"}, {"Route", "x"}, {"X App", "x"}, {"", "x"}, {"1X", "x"}, {"X-A", "\x00"}} {
		if err := ValidateHeader(h); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%q accepted", h)
		}
	}
	for _, s := range []string{"a\"b", "a\\", "a\nb"} {
		if err := ValidateDisplayName(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestConfigValidateNamesKey(t *testing.T) {
	cases := map[string]Config{
		"listen":          {Domain: "example.com"},
		"domain":          {Listen: ListenConfig{UDP: "127.0.0.1:0"}},
		"transport":       {Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", Transport: "sctp"},
		"outbound_proxy":  {Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", OutboundProxy: "sip:<x>"},
		"register_expiry": {Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", RegisterExpiry: 1},
		"credentials.a@b": {Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", Credentials: map[string]Credential{"a@b": {}}},
		"listen.tls_cert": {Listen: ListenConfig{TLS: "127.0.0.1:0"}, Domain: "example.com"},
		"instance_secret": {Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com", InstanceSecret: "short"},
	}
	for key, cfg := range cases {
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", key, err)
		}
	}
	if err := (Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"bob@example.com", "sip:bob@example.com", "tel:+1555", "a\r\nb", "sip:a@b;x=y"} {
		f.Add(s)
	}
	g, err := New(Config{Listen: ListenConfig{UDP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := g.ParseTarget(s)
		if err != nil {
			return
		}
		out := u.String()
		if strings.ContainsAny(out, "\r\n\x00<>,\" ") || strings.Contains(out, "?") {
			t.Fatalf("%q -> %q", s, out)
		}
	})
}
