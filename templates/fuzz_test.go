package templates

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// FuzzCheck: any payload and header value a client sends is checked
// without a panic, and what passes maps to a SIP request that sipgw
// either takes or refuses as invalid input, never otherwise.
func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"points":3}`), "chess")
	f.Add([]byte(`{"points":"x","player":{"name":"a"}}`), "a\r\nVia: x")
	f.Add([]byte(`[]`), "")
	f.Add([]byte(`{"points":1e400}`), "\x00")
	s, err := New(parse(f, good))
	if err != nil {
		f.Fatal(err)
	}
	a := s.Lookup(protocol.PackageCall, "x-score")
	f.Fuzz(func(t *testing.T, payload []byte, game string) {
		fr := frame("", protocol.Ext{Name: "X-Game", Value: game})
		fr.Payload = json.RawMessage(payload)
		if err := a.Check(fr); err != nil {
			if protocol.CodeOf(err) != protocol.CodeBadRequest {
				t.Fatalf("check: %v", err)
			}
			return
		}
		r := a.SIPRequest(fr)
		if err := sipgw.ValidateRequest(r, true); err != nil && !errors.Is(err, sipgw.ErrInvalidInput) {
			t.Fatalf("request %+v: %v", r, err)
		}
	})
}
