package sipgw

import (
	"errors"
	"testing"

	"github.com/emiago/sipgo/sip"
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

// TestReceivesReq: what an incoming request is matched by (the Event of
// a NOTIFY, the Content-Type of the others, lower case and without
// parameters), and what is never a declared action's whatever the
// templates say: a NOTIFY of refer (our transfer's progress), an SDP.
func TestReceivesReq(t *testing.T) {
	g := &UserAgent{}
	var asked []string
	g.SetReceives(func(inDialog bool, method, mark string) bool {
		asked = append(asked, method+" "+mark)
		return true
	})
	for _, tc := range []struct {
		method       sip.RequestMethod
		header, val  string
		mark         string
		ok, askedFor bool
	}{
		{sip.NOTIFY, "Event", "X-Alert;id=7", "x-alert", true, true},
		{sip.MESSAGE, "Content-Type", "Application/X-Card+JSON; charset=utf-8", "application/x-card+json", true, true},
		{sip.UPDATE, "Content-Type", "application/x-state+json", "application/x-state+json", true, true},
		{sip.NOTIFY, "Event", "refer", "", false, false},
		{sip.UPDATE, "Content-Type", "application/sdp", "", false, false},
		{sip.MESSAGE, "X-Other", "a", "", false, false},
	} {
		asked = nil
		req := sip.NewRequest(tc.method, sip.Uri{Scheme: "sip", Host: "example.com"})
		req.AppendHeader(sip.NewHeader(tc.header, tc.val))
		mark, ok := g.receivesReq(true, req)
		if mark != tc.mark || ok != tc.ok || (len(asked) == 1) != tc.askedFor {
			t.Errorf("%s %s: %q: mark %q ok %v asked %v", tc.method, tc.header, tc.val, mark, ok, asked)
		}
	}
}
