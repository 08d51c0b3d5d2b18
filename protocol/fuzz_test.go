package protocol

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, that it accepts only valid
// JSON, and that whatever it accepts encodes to a frame that decodes to
// the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range referenceFrames {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"control":{"type":"request"},"header":{"x-a":1e5,"x-b":true},"payload":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"control":{"type":"request","sequence":"1"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		_ = Validate(fr)
		out := fr.Marshal()
		if !json.Valid(out) {
			t.Fatalf("produced invalid JSON %q", out)
		}
		fr2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if fr.Control.Version == "" {
			fr.Control.Version = Version
		}
		if len(fr.Payload) == 0 {
			fr.Payload = json.RawMessage("{}")
		}
		if !reflect.DeepEqual(fr, fr2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", fr, fr2)
		}
	})
}
