package protocol

import (
	"slices"
	"testing"
)

func destinations(f *Frame) []Destination { return slices.Collect(Destinations(f)) }

// TestDestinationsEveryAction: for every action of every package, in
// every frame type it may travel in, a frame that carries a target, a
// refer_to and extension headers yields the request's target, the
// refer_to and the party-naming headers, and nothing else.
func TestDestinationsEveryAction(t *testing.T) {
	types := []Type{TypeRequest, TypeResponse, TypeMessage, TypeError}
	n := 0
	for pkg, acts := range actions {
		for act, allowed := range acts {
			for _, typ := range types {
				if allowed&bit(typ) == 0 {
					continue
				}
				n++
				f := &Frame{
					Control: Control{Type: typ, Package: pkg, SubsessionID: "c1"},
					Header: Header{Action: act, Target: "t@example.com", ReferTo: "tel:+19005550100", Ext: []Ext{
						{Name: "X-Tenant", Value: "a"},
						{Name: "referred-by", Value: "<sip:x@example.com>"},
						{Name: "P-Asserted-Identity", Kind: ExtNumber, Value: "1"},
					}},
				}
				want := []Destination{{Field: "refer_to", Address: "tel:+19005550100"},
					{Field: "referred-by", Address: "<sip:x@example.com>", Header: true}}
				if typ == TypeRequest {
					want = append([]Destination{{Field: "target", Address: "t@example.com"}}, want...)
				}
				if got := destinations(f); !slices.Equal(got, want) {
					t.Errorf("%s %s/%s: %+v, want %+v", pkg, typ, act, got, want)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d package/action/type combinations", n)
	}
}

func TestDestinationsCases(t *testing.T) {
	cases := []struct {
		name string
		f    Frame
		want []Destination
	}{
		{"call start", Frame{Control: Control{Type: TypeRequest}, Header: Header{Action: ActionStart, Target: "sales@example.com"}},
			[]Destination{{Field: "target", Address: "sales@example.com"}}},
		{"transfer", Frame{Control: Control{Type: TypeRequest}, Header: Header{Action: ActionTransfer, Target: "sales@example.com", ReferTo: "tel:+1900"}},
			[]Destination{{Field: "target", Address: "sales@example.com"}, {Field: "refer_to", Address: "tel:+1900"}}},
		{"answer with refer_to", Frame{Control: Control{Type: TypeResponse}, Header: Header{Action: ActionTransfer, Target: "x@example.com", ReferTo: "tel:+1900"}},
			[]Destination{{Field: "refer_to", Address: "tel:+1900"}}},
		{"presence start", Frame{Control: Control{Type: TypeRequest, Package: PackagePresence}, Header: Header{Action: ActionStart, Target: "pres:bob@example.com"}},
			[]Destination{{Field: "target", Address: "pres:bob@example.com"}}},
		{"mailbox", Frame{Control: Control{Type: TypeRequest, Package: PackageMessageNotification}, Header: Header{Action: ActionStart, Target: "sip:vm@example.com"}},
			[]Destination{{Field: "target", Address: "sip:vm@example.com"}}},
		{"message", Frame{Control: Control{Type: TypeRequest, Package: PackageMessaging}, Header: Header{Action: ActionSend, Target: "bob"}},
			[]Destination{{Field: "target", Address: "bob"}}},
		{"publish names no one", Frame{Control: Control{Type: TypeRequest, Package: PackagePresence}, Header: Header{Action: ActionPublish},
			Payload: []byte(`{"presentity":"tel:+1900","status":"open"}`)}, nil},
		{"trickle", Frame{Control: Control{Type: TypeMessage}, Header: Header{Action: ActionTrickle, Target: "x@example.com"}}, nil},
		{"diversion header", Frame{Control: Control{Type: TypeMessage}, Header: Header{Action: ActionDTMF, Ext: []Ext{{Name: "Diversion", Value: "tel:+1900"}}}},
			[]Destination{{Field: "Diversion", Address: "tel:+1900", Header: true}}},
	}
	for _, c := range cases {
		if got := destinations(&c.f); !slices.Equal(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	// A consumer that stops early stops the iteration.
	f := &Frame{Control: Control{Type: TypeRequest}, Header: Header{Target: "a", ReferTo: "b", Ext: []Ext{{Name: "To", Value: "c"}}}}
	for range Destinations(f) {
		break
	}
}

func TestCheckAddress(t *testing.T) {
	for _, s := range []string{"bob", "bob@example.com", "sip:bob@example.com", "sips:b@x.org", "tel:+1-555-0100", "+15550100", "pres:bob@example.com"} {
		if err := CheckAddress("target", s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", "<sip:bob@example.com>", "bob@example.com\r\nVia: x", "a b", `"bob"`, `a\b`, string(make([]byte, 257))} {
		if err := CheckAddress("target", s); CodeOf(err) != CodeBadRequest {
			t.Errorf("%q: %v, want 400", s, err)
		}
	}
}

func BenchmarkDestinations(b *testing.B) {
	f := &Frame{Control: Control{Type: TypeRequest}, Header: Header{Action: ActionTransfer, Target: "sales@example.com",
		ReferTo: "tel:+18005550100", Ext: []Ext{{Name: "X-App", Value: "demo"}}}}
	b.ReportAllocs()
	for b.Loop() {
		for d := range Destinations(f) {
			if CheckAddress(d.Field, d.Address) != nil {
				b.Fatal(d)
			}
		}
	}
}

func TestPartyHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Referred-By": true, "REFERRED-BY": true, "b": true, "P-Asserted-Identity": true, "Diversion": true,
		"X-App": false, "Referred-By-X": false, "": false, "p-asserted-identity-and-some-more-text": false,
	} {
		if got := PartyHeader(name); got != want {
			t.Errorf("PartyHeader(%q) = %v", name, got)
		}
	}
}
