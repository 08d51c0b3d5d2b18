package pidf

import (
	"testing"
)

// FuzzParse checks that Parse never panics and that what it returns is a
// valid payload which marshals and parses back to itself.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"><tuple id="t"><status><basic>open</basic></status></tuple><note>n</note></presence>`))
	f.Add([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b"><dm:person id="p"><r:activities><r:other>x</r:other></r:activities></dm:person></presence>`))
	f.Add([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:x@y"/>`))
	f.Add([]byte(`<?xml version="1.0"?><x/>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		if err := Validate(p); err != nil {
			t.Fatalf("Parse returned an invalid payload %+v: %v", p, err)
		}
		b, err := Marshal(p)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", p, err)
		}
		q, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(%+v)): %v\n%s", p, err, b)
		}
		if q != p {
			t.Fatalf("round trip: %+v became %+v", p, q)
		}
	})
}
