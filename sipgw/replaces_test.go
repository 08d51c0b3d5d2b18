package sipgw

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestParseReplaces(t *testing.T) {
	r, err := ParseReplaces(" 425928@bobster.example.org ;to-tag=7743; from-tag=6472;early-only")
	if err != nil || r.CallID != "425928@bobster.example.org" || r.ToTag != "7743" || r.FromTag != "6472" || !r.EarlyOnly {
		t.Fatalf("%+v, %v", r, err)
	}
	if got, want := r.String(), "425928@bobster.example.org;to-tag=7743;from-tag=6472;early-only"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "abc", "abc;to-tag=1", "abc;from-tag=1", "a b;to-tag=1;from-tag=2", "abc;to-tag=1 2;from-tag=2", "a\r\nVia: x;to-tag=1;from-tag=2"} {
		if _, err := ParseReplaces(bad); err == nil {
			t.Errorf("ParseReplaces(%q) accepted", bad)
		}
	}
}

// TestEscapeURIHeader: the Replaces value in a Refer-To URI is escaped as
// RFC 3891 section 7's example shows (';' %3B, '=' %3D, '@' %40).
func TestEscapeURIHeader(t *testing.T) {
	got := escapeURIHeader("425928@bobster.example.org;to-tag=7743;from-tag=6472")
	if want := "425928%40bobster.example.org%3Bto-tag%3D7743%3Bfrom-tag%3D6472"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestReferReplaces: the Replaces of a Refer-To URI is unescaped and
// taken out, with the URI's other headers.
func TestReferReplaces(t *testing.T) {
	var u sip.Uri
	if err := sip.ParseUri("sip:carol@example.com?Replaces=425928%40bobster.example.org%3Bto-tag%3D7743%3Bfrom-tag%3D6472&Subject=hi", &u); err != nil {
		t.Fatal(err)
	}
	rep, err := referReplaces(&u)
	if err != nil || rep == nil || *rep != (Replaces{CallID: "425928@bobster.example.org", ToTag: "7743", FromTag: "6472"}) {
		t.Fatalf("%+v, %v", rep, err)
	}
	if got := u.String(); got != "sip:carol@example.com" {
		t.Fatalf("URI %q", got)
	}
	if err := sip.ParseUri("sip:carol@example.com?Replaces=abc", &u); err != nil {
		t.Fatal(err)
	}
	if _, err := referReplaces(&u); err == nil {
		t.Fatal("a Replaces without tags was taken")
	}
}
