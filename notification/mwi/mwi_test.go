package mwi

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseRFC3842Example(t *testing.T) {
	// RFC 3842 section 5.3, with its optional message headers.
	body := "Messages-Waiting: yes\r\n" +
		"Message-Account: sip:alice@vmail.example.com\r\n" +
		"Voice-Message: 4/8 (1/2)\r\n" +
		"\r\n" +
		"To: <alice@atlanta.example.com>\r\n" +
		"From: <bob@biloxi.example.com>\r\n" +
		"Subject: carpool tomorrow?\r\n"
	got, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Waiting: true, Account: "sip:alice@vmail.example.com",
		Classes: []Class{{Name: "voice-message", Counts: Counts{4, 8, 1, 2}}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if p := string(got.Payload()); p != `{"messages_waiting":"yes","message_account":"sip:alice@vmail.example.com","voice-message":"4/8 (1/2)"}` {
		t.Errorf("payload %s", p)
	}
}

func TestParseVariants(t *testing.T) {
	body := "messages-waiting:no\n" +
		"Fax-Message: 0/1\n" +
		"X-Vendor: whatever\n" +
		"voice-message:\t2/8\n" +
		"  (0/2)\n"
	got, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Classes: []Class{
		{Name: "voice-message", Counts: Counts{2, 8, 0, 2}},
		{Name: "fax-message", Counts: Counts{0, 1, 0, 0}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// wsc.js needs the "(" even when the body had no urgent counts.
	if p := string(got.Payload()); p != `{"messages_waiting":"no","voice-message":"2/8 (0/2)","fax-message":"0/1 (0/0)"}` {
		t.Errorf("payload %s", p)
	}
}

func TestRoundTrip(t *testing.T) {
	s := Summary{Waiting: true, Account: "sip:bob@example.com", Classes: []Class{
		{Name: "voice-message", Counts: Counts{2, 8, 0, 2}},
		{Name: "text-message", Counts: Counts{1, 0, 1, 0}},
		{Name: "none", Counts: Counts{MaxCount, 0, 0, 0}},
	}}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "Messages-Waiting: yes\r\nMessage-Account: sip:bob@example.com\r\nVoice-Message: 2/8 (0/2)\r\nText-Message: 1/0 (1/0)\r\n") {
		t.Errorf("body %q", b)
	}
	got, err := Parse(b)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("Parse(Marshal) = %+v, %v", got, err)
	}
	got, err = ParsePayload(s.Payload())
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("ParsePayload(Payload) = %+v, %v", got, err)
	}
	// The SDK's own example.
	got, err = ParsePayload(json.RawMessage(`{"messages_waiting":"yes","message_account":"sip:bob@example.com","voice-message":"2/8 (0/2)","other":1}`))
	if err != nil || !got.Waiting || len(got.Classes) != 1 || got.Classes[0].Counts != (Counts{2, 8, 0, 2}) {
		t.Fatalf("ParsePayload = %+v, %v", got, err)
	}
}

func TestParseRejects(t *testing.T) {
	for name, body := range map[string]string{
		"empty":             "",
		"no status":         "Voice-Message: 1/2\r\n",
		"status after gap":  "\r\nMessages-Waiting: yes\r\n",
		"bad status":        "Messages-Waiting: maybe\r\n",
		"repeated status":   "Messages-Waiting: yes\r\nMessages-Waiting: no\r\n",
		"not a header":      "Messages-Waiting: yes\r\nhello\r\n",
		"bad counts":        "Messages-Waiting: yes\r\nVoice-Message: 1-2\r\n",
		"half urgent":       "Messages-Waiting: yes\r\nVoice-Message: 1/2 (3)\r\n",
		"unclosed urgent":   "Messages-Waiting: yes\r\nVoice-Message: 1/2 (3/4\r\n",
		"trailing junk":     "Messages-Waiting: yes\r\nVoice-Message: 1/2 (3/4) x\r\n",
		"negative":          "Messages-Waiting: yes\r\nVoice-Message: -1/2\r\n",
		"huge":              "Messages-Waiting: yes\r\nVoice-Message: 10000000000/2\r\n",
		"repeated class":    "Messages-Waiting: yes\r\nVoice-Message: 1/2\r\nvoice-message: 1/2\r\n",
		"account injection": "Messages-Waiting: yes\r\nMessage-Account: sip:a@b x\r\n",
		"account no scheme": "Messages-Waiting: yes\r\nMessage-Account: alice\r\n",
		"leading fold":      " Messages-Waiting: yes\r\n",
		"nul":               "Messages-Waiting: yes\x00\r\n",
		"bad utf8":          "Messages-Waiting: yes\r\nX: \xff\r\n",
	} {
		if _, err := Parse([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Parse([]byte("Messages-Waiting: yes\r\n" + strings.Repeat("X: y\r\n", MaxSize/6))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: err = %v", err)
	}
}

func TestPayloadRejects(t *testing.T) {
	for _, p := range []string{
		``, `[]`, `null`, `{}`, `{"messages_waiting":true}`, `{"messages_waiting":"perhaps"}`,
		`{"messages_waiting":"yes","message_account":"sip:a@b\r\nX: y"}`,
		`{"messages_waiting":"yes","voice-message":"2/8 (0"}`,
		`{"messages_waiting":"yes","voice-message":3}`,
	} {
		if _, err := ParsePayload(json.RawMessage(p)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePayload(%s): err = %v", p, err)
		}
	}
	for _, s := range []Summary{
		{Account: "sip:a@b\r\nEvil: 1"},
		{Classes: []Class{{Name: "video-message"}}},
		{Classes: []Class{{Name: "Voice-Message"}}},
		{Classes: []Class{{Name: "fax-message"}, {Name: "voice-message"}}},
		{Classes: []Class{{Name: "voice-message", Counts: Counts{New: -1}}}},
	} {
		if _, err := s.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) accepted", s)
		}
		if s.Payload() != nil {
			t.Errorf("Payload(%+v) not nil", s)
		}
	}
}
