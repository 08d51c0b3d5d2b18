package rtpengine

import (
	"reflect"
	"testing"
)

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{
		"command": "offer",
		"flags":   []any{"trust-address", "SDES-off"},
		"n":       int64(-42),
		"zero":    int64(0),
		"nested":  map[string]any{"a": []any{}, "b": ""},
	}
	b, err := encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want := "d7:command5:offer5:flagsl13:trust-address8:SDES-offe1:ni-42e6:nestedd1:ale1:b0:e4:zeroi0ee"
	if string(b) != want {
		t.Fatalf("encode = %s, want %s", b, want)
	}
	out, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("decode = %#v, want %#v", out, in)
	}
}

func TestBencodeRejects(t *testing.T) {
	for _, s := range []string{
		"", "i", "ie", "i-0e", "i03e", "i+3e", "i1x2e", "5:abc", "01:a", "d1:ae", "d1:a1:b1:a1:ce",
		"di1e1:ae", "l", "x", "1:ab", "llllllllllllllllllllllllllllllllllllee",
		"4294967296:a",
	} {
		if v, err := decode([]byte(s)); err == nil {
			t.Errorf("decode(%q) = %#v, want an error", s, v)
		}
	}
}

// FuzzDecode: decode never panics, and what decodes encodes to bytes
// that decode to the same value. (Byte equality with the input is not
// required: rtpengine writes dictionary keys in insertion order, so decode
// accepts any order while encode sorts, as BEP 3 asks.)
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"d6:result4:ponge",
		"d3:sdp5:v=0\r\n6:result2:oke",
		"d6:result5:error12:error-reason15:Unknown call-ide",
		"li1ei-1el0:ee",
		"d1:ad1:bd1:cleee",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		v, err := decode(p)
		if err != nil {
			return
		}
		b, err := encode(nil, v)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", v, err)
		}
		v2, err := decode(b)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip of %q: %q -> %#v, %v", p, b, v2, err)
		}
		if len(b) != len(p) {
			t.Fatalf("%q re-encoded as %q: lengths differ", p, b)
		}
	})
}
