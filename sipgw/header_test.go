package sipgw

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestValidateHeader(t *testing.T) {
	ok := []Header{
		{"X-App", "a b"},
		{"X-App", ""},
		{"X-App", "tab\there"},
		{"X-App", "café ☎ 日本語"},
		{"X-App", `say "hi"; x=1, y=2`},
		{"Subject", "hi"},
		{"x-lower", "1"},
	}
	for _, h := range ok {
		if err := ValidateHeader(h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	bad := []struct {
		h       Header
		problem string // in the error
	}{
		{Header{"X-App", "a\r\nVia: SIP/2.0/UDP evil"}, "control character U+000D"},
		{Header{"X-App", "a\nb"}, "control character U+000A"},
		{Header{"X-App", "a\x00"}, "control character U+0000"},
		{Header{"X-App", "a\x1b[31m"}, "control character U+001B"},
		{Header{"X-App", "a\x7f"}, "control character U+007F"},
		{Header{"X-App", "a\u2028Via: evil"}, "U+2028"},
		{Header{"X-App", "a\u2029"}, "U+2029"},
		{Header{"X-App", "a\u0085b"}, "U+0085"},
		{Header{"X-App", "\ufeffa"}, "U+FEFF"},
		{Header{"X-App", "a\u200bb"}, "U+200B"},
		{Header{"X-App", "evil\u202egnp.exe"}, "U+202E"},
		{Header{"X-App", "a\ue000"}, "U+E000"},
		{Header{"X-App", "a\uffff"}, "U+FFFF"},
		{Header{"X-App", "a\u00a0b"}, "U+00A0"},
		{Header{"X-App", "<sip:boss@example.com>"}, "'<'"},
		{Header{"X-App", "a>"}, "'>'"},
		{Header{"X-App", "a\xffb"}, "not UTF-8"},
		{Header{"X-App", strings.Repeat("a", 1025)}, "over 1024 bytes"},
		{Header{"Via", "x"}, "set by the gateway"},
		{Header{"v", "x"}, "set by the gateway"},
		{Header{"P-Asserted-Identity", "<sip:boss@example.com>"}, "set by the gateway"},
		{Header{"p-preferred-identity", "x"}, "set by the gateway"},
		{Header{"Privacy", "none"}, "set by the gateway"},
		{Header{"Identity", "x"}, "set by the gateway"},
		{Header{"Referred-By", "x"}, "set by the gateway"},
		{Header{"b", "x"}, "set by the gateway"},
		{Header{"Session-Expires", "90"}, "set by the gateway"},
		{Header{"x", "90"}, "set by the gateway"},
		{Header{"Min-SE", "90"}, "set by the gateway"},
		{Header{"Replaces", "x"}, "set by the gateway"},
		{Header{"Content-Encoding", "gzip"}, "set by the gateway"},
		{Header{"X App", "x"}, "not a header name"},
		{Header{"X_App", "x"}, "not a header name"},
		{Header{"1X", "x"}, "not a header name"},
		{Header{"", "x"}, "not a header name"},
		{Header{strings.Repeat("X", 65), "x"}, "not a header name"},
	}
	for _, tc := range bad {
		err := ValidateHeader(tc.h)
		var he *HeaderError
		if !errors.As(err, &he) || !errors.Is(err, ErrInvalidInput) || he.Name != tc.h.Name ||
			!strings.Contains(err.Error(), tc.problem) || !strings.Contains(err.Error(), `"`+tc.h.Name+`"`) {
			t.Errorf("%q: %v, want a HeaderError naming it, with %q", tc.h, err, tc.problem)
		}
	}
}

func TestContentTypeGrammar(t *testing.T) {
	for _, v := range []string{"text/plain", "text/plain;charset=UTF-8", `text/plain ; charset = "utf-8"`,
		"application/vnd.example+json", `message/x;a="q\"uote"`} {
		if err := checkHeaderValue("Content-Type", v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	for _, v := range []string{"", "text", "text/", "/plain", "text/plain;", "text/plain;charset", "text/plain;=x",
		"text/plain\r\nVia: x", "text/plain;x=\"a\u2028\"", "text/plain;x=<a>", `text/plain;x="open`,
		"text/plain x", "text/pl\u00e4in", strings.Repeat("a", 100) + "/" + strings.Repeat("b", 100)} {
		var he *HeaderError
		if err := checkHeaderValue("content-type", v); !errors.As(err, &he) || he.Name != "content-type" {
			t.Errorf("%q accepted (%v)", v, err)
		}
	}
}

// FuzzValidateHeader: whatever ValidateHeader accepts goes into a SIP
// request as exactly one header, whose value sipgo's parser reads back
// unchanged (but for the white space around it), and adds no other
// header.
func FuzzValidateHeader(f *testing.F) {
	for _, s := range [][2]string{{"X-App", "a b"}, {"X-App", "a\r\nVia: x"}, {"X-App", "a\u2028b"},
		{"Subject", "café"}, {"Via", "x"}, {"X-App", "<sip:a@b>"}, {"X-App", " a\t"}, {"X-A", "a,b;c=d"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		if ValidateHeader(Header{name, value}) != nil {
			return
		}
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "example.com"})
		req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"))
		req.AppendHeader(sip.NewHeader("From", "<sip:a@example.com>;tag=1"))
		req.AppendHeader(sip.NewHeader("To", "<sip:b@example.com>"))
		req.AppendHeader(sip.NewHeader("Call-ID", "c1"))
		req.AppendHeader(sip.NewHeader("CSeq", "1 OPTIONS"))
		req.AppendHeader(sip.NewHeader(name, value))
		req.SetBody(nil)
		parsed, err := sip.ParseMessage([]byte(req.String()))
		msg, _ := parsed.(*sip.Request)
		if err != nil || msg == nil {
			t.Fatalf("%q: %q does not parse: %v", name, value, err)
		}
		hs := msg.GetHeaders(name)
		if len(hs) != 1 || hs[0].Value() != strings.Trim(value, " \t") {
			t.Fatalf("%q: %q read back as %d headers %v", name, value, len(hs), hs)
		}
		if n, want := len(msg.Headers()), len(req.Headers()); n != want {
			t.Fatalf("%q: %q: %d headers parsed, %d sent", name, value, n, want)
		}
	})
}
