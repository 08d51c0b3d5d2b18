package mwi

import (
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics and that what it returns
// marshals, both as a body and as a payload, and parses back to itself.
func FuzzParse(f *testing.F) {
	f.Add([]byte("Messages-Waiting: yes\r\nMessage-Account: sip:a@b\r\nVoice-Message: 2/8 (0/2)\r\n\r\nSubject: x\r\n"))
	f.Add([]byte("messages-waiting:no\nfax-message: 1/2\n  (3/4)\n"))
	f.Add([]byte("Messages-Waiting: yes\r\nNone: 0/0\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", s, err)
		}
		got, err := Parse(b)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("Parse(Marshal(%+v)) = %+v, %v", s, got, err)
		}
		p := s.Payload()
		if p == nil {
			t.Fatalf("Payload(%+v) is nil", s)
		}
		got, err = ParsePayload(p)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("ParsePayload(%s) = %+v, %v", p, got, err)
		}
	})
}

// FuzzParsePayload checks the JSON direction the same way.
func FuzzParsePayload(f *testing.F) {
	f.Add([]byte(`{"messages_waiting":"yes","message_account":"sip:bob@example.com","voice-message":"2/8 (0/2)"}`))
	f.Add([]byte(`{"messages_waiting":"no","fax-message":"1/2"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParsePayload(data)
		if err != nil {
			return
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", s, err)
		}
		got, err := Parse(b)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("Parse(Marshal(%+v)) = %+v, %v", s, got, err)
		}
	})
}
