package protocol

import (
	"encoding/json"
	"testing"
)

var messagePayloads = []string{
	``,
	`{}`,
	`{"body":"hi"}`,
	`{"content_type":"text/plain","body":"hi"}`,
	`{"body":null,"content_type":null}`,
	` {"body" : "a\"b\u00e9\ud83d\ude00" , "x":[1,{"y":true}]} `,
	`{"BODY":"x","Content_Type":"y"}`,
	`{"body":1}`,
	`{"body":true}`,
	`{"body":{}}`,
	`{"body":[]}`,
	`{"Body":5}`,
	`{"content_TYPE":["a"]}`,
	`{"body":"x","body":2}`,
	`{"bo\u0064y":3}`,
	`{"other":5,"body":"ok"}`,
	`{"ſbody":1}`,
	`{"body":"\xff"}`,
	`null`,
	`[]`,
	`"body"`,
	`12`,
	`{"body":"x"} x`,
	`{"body":"x"`,
	`{"body":}`,
	`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"body":"b"}`,
	`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"body":2}`,
}

// The relay's check must answer as decoding does, error text included.
func TestCheckMessagePayloadMatchesDecode(t *testing.T) {
	for _, raw := range messagePayloads {
		checkLikeDecode(t, []byte(raw))
	}
	// The bad payloads of the list do get the reason decoding gives.
	err := CheckMessagePayload(json.RawMessage(`{"body":1}`))
	if e, ok := err.(*Error); !ok || e.Code != CodeBadRequest ||
		e.Reason != "payload is malformed: cannot unmarshal number into Go struct field MessagePayload.body of type string" {
		t.Fatalf("err = %#v", err)
	}
}

func FuzzCheckMessagePayload(f *testing.F) {
	for _, raw := range messagePayloads {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkLikeDecode(t, raw) })
}

func checkLikeDecode(t *testing.T, raw []byte) {
	t.Helper()
	var p MessagePayload
	want := DecodePayload(raw, &p)
	got := CheckMessagePayload(raw)
	if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
		t.Fatalf("%q: CheckMessagePayload = %v, DecodePayload = %v", raw, got, want)
	}
	// The fast path alone must never pass what decoding fails.
	if messagePayloadFits(raw) && want != nil {
		t.Fatalf("%q: the scanner passes what decoding fails with %v", raw, want)
	}
}

func BenchmarkCheckMessagePayload(b *testing.B) {
	raw := json.RawMessage(`{"content_type":"text/plain","body":"hello there, a message of a typical length"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := CheckMessagePayload(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMessagePayload(b *testing.B) {
	raw := json.RawMessage(`{"content_type":"text/plain","body":"hello there, a message of a typical length"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		var p MessagePayload
		if err := DecodePayload(raw, &p); err != nil {
			b.Fatal(err)
		}
	}
}
