package pidf

import (
	"errors"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
)

func TestRoundTrip(t *testing.T) {
	for _, p := range []protocol.PresencePayload{
		{Presentity: "alice@example.com", Status: "open"},
		{Presentity: "alice@example.com", Status: "closed", Note: "gone <home> & \"out\""},
		{Presentity: "sip:bob@example.com", Status: "open", Activity: "on-the-phone", Note: "ça va"},
		{Presentity: "tel:+15551234567", Status: "open", Activity: "gardening"},
		{Presentity: "carol@example.com", Status: "open", Activity: "other"},
	} {
		b, err := Marshal(p)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", p, err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(%s): %v", b, err)
		}
		if got != p {
			t.Errorf("round trip of %+v gave %+v\n%s", p, got, b)
		}
	}
}

func TestMarshalNamespaces(t *testing.T) {
	b, err := Marshal(protocol.PresencePayload{Presentity: "alice@example.com", Status: "open", Activity: "away"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@example.com">`,
		`<status><basic>open</basic></status>`,
		`<person xmlns="urn:ietf:params:xml:ns:pidf:data-model"`,
		`<activities xmlns="urn:ietf:params:xml:ns:pidf:rpid">`,
		`<away xmlns="urn:ietf:params:xml:ns:pidf:rpid">`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("document lacks %s:\n%s", want, s)
		}
	}
}

// Documents as other implementations write them: prefixes, several
// tuples, RFC 3863's own example, RPID in the status.
func TestParseForeign(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want protocol.PresencePayload
	}{
		{"rfc3863 example", `<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf" entity="pres:someone@example.com">
  <impp:tuple id="sg89ae">
    <impp:status><impp:basic>open</impp:basic></impp:status>
    <impp:contact priority="0.8">tel:+09012345678</impp:contact>
  </impp:tuple>
  <impp:note xml:lang="en">Don't Disturb
     Please!</impp:note>
</impp:presence>`, protocol.PresencePayload{Presentity: "someone@example.com", Status: "open", Note: "Don't Disturb      Please!"}},
		{"rpid person", `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
 xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:bob@example.com">
 <tuple id="a"><status><basic>closed</basic></status></tuple>
 <tuple id="b"><status><basic> open </basic></status><note>tuple note</note></tuple>
 <dm:person id="p"><rpid:activities><rpid:meeting/><rpid:busy/></rpid:activities><dm:note>person note</dm:note></dm:person>
</presence>`, protocol.PresencePayload{Presentity: "sip:bob@example.com", Status: "open", Activity: "meeting", Note: "person note"}},
		{"rpid in status, no basic", `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="pres:x@y">
 <tuple id="a"><status><r:activities><r:other> lunch </r:other></r:activities></status></tuple></presence>`,
			protocol.PresencePayload{Presentity: "x@y", Status: "closed", Activity: "lunch"}},
		{"no tuples", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"/>`,
			protocol.PresencePayload{Presentity: "x@y", Status: "closed"}},
		{"control characters cleaned", "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:x@y\"><note>a\tb&#10;c</note></presence>",
			protocol.PresencePayload{Presentity: "x@y", Status: "closed", Note: "a b c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if err := Validate(got); err != nil {
				t.Errorf("parsed payload fails Validate: %v", err)
			}
		})
	}
}

func TestParseLongNoteIsCut(t *testing.T) {
	doc := `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"><note>` + strings.Repeat("é", MaxNote) + `</note></presence>`
	got, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Note) > MaxNote || Validate(got) != nil {
		t.Errorf("note of %d bytes not cut to fit", len(got.Note))
	}
}

func TestParseRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":           ``,
		"not xml":         `hello`,
		"wrong namespace": `<presence xmlns="urn:example" entity="pres:x@y"/>`,
		"wrong root":      `<tuple xmlns="urn:ietf:params:xml:ns:pidf"/>`,
		"no entity":       `<presence xmlns="urn:ietf:params:xml:ns:pidf"/>`,
		"bad entity":      `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a b"/>`,
		"bad basic":       `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"><tuple id="a"><status><basic>maybe</basic></status></tuple></presence>`,
		"unclosed":        `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"><tuple>`,
		"trailing":        `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"/><presence/>`,
		"trailing text":   `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"/>junk`,
		"entity ref":      `<!DOCTYPE p [<!ENTITY e "x">]><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"><note>&e;</note></presence>`,
		"latin1":          `<?xml version="1.0" encoding="ISO-8859-1"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"/>`,
		"bad utf8":        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:x@y\"><note>\xff</note></presence>",
	} {
		if _, err := Parse([]byte(doc)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	big := `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"><note>` + strings.Repeat("a", MaxSize) + `</note></presence>`
	if _, err := Parse([]byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: err = %v, want ErrTooLarge", err)
	}
}

func TestValidate(t *testing.T) {
	ok := []protocol.PresencePayload{
		{Status: "open"}, {Status: "closed", Activity: "away", Note: "back at 5"}, {},
	}
	for _, p := range ok {
		if err := Validate(p); err != nil {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
	bad := []protocol.PresencePayload{
		{Status: "busy"},
		{Status: "OPEN"},
		{Status: "open", Activity: strings.Repeat("a", MaxActivity+1)},
		{Status: "open", Note: strings.Repeat("a", MaxNote+1)},
		{Status: "open", Note: "line\r\nInjected: yes"},
		{Status: "open", Note: "nul\x00"},
		{Status: "open", Activity: " away"},
		{Status: "open", Note: "\xff"},
		{Status: "open", Presentity: "a b@c"},
	}
	for _, p := range bad {
		if err := Validate(p); err == nil {
			t.Errorf("Validate(%+v) accepted", p)
		}
		if p.Presentity == "" {
			p.Presentity = "x@y"
		}
		if _, err := Marshal(p); err == nil {
			t.Errorf("Marshal(%+v) accepted", p)
		}
	}
	if _, err := Marshal(protocol.PresencePayload{Status: "open"}); err == nil {
		t.Error("Marshal without presentity accepted")
	}
}
