package sipgw

import (
	"errors"
	"testing"
)

// TestValidateRequest: what a declared action may put in a SIP request.
func TestValidateRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		r        Request
		inDialog bool
		ok       bool
	}{
		{"info", Request{Method: "INFO", InfoPackage: "x-score", ContentType: "application/json", Body: []byte(`{}`)}, true, true},
		{"info out of dialog", Request{Method: "INFO", InfoPackage: "x-score"}, false, false},
		{"update out of dialog", Request{Method: "UPDATE"}, false, false},
		{"message", Request{Method: "MESSAGE", ContentType: "text/plain", Body: []byte("hi")}, false, true},
		{"notify", Request{Method: "NOTIFY", Event: "x-alert"}, false, true},
		{"invite", Request{Method: "INVITE"}, true, false},
		{"bad package", Request{Method: "INFO", InfoPackage: "a b"}, true, false},
		{"body without type", Request{Method: "MESSAGE", Body: []byte("hi")}, false, false},
		{"bad type", Request{Method: "MESSAGE", ContentType: "text", Body: []byte("hi")}, false, false},
		{"too big", Request{Method: "MESSAGE", ContentType: "text/plain", Body: make([]byte, MaxMessageBody+1)}, false, false},
		{"crlf in header", Request{Method: "OPTIONS", Headers: []Header{{Name: "X-A", Value: "a\r\nVia: x"}}}, false, false},
		{"owned header", Request{Method: "OPTIONS", Headers: []Header{{Name: "P-Asserted-Identity", Value: "<sip:boss@example.com>"}}}, false, false},
		{"event injection", Request{Method: "NOTIFY", Event: "a\r\nX: y"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateRequest(tc.r, tc.inDialog)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("err %v is not ErrInvalidInput", err)
			}
		})
	}
}
