package protocol

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Frames captured from wsc.js (shared/reference/wsc-sdk-1.0-wire.md).
var referenceFrames = []string{
	`{"control":{"type":"request","package_type":"register","sequence":1,"version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com"},"payload":{}}`,
	`{"control":{"type":"request","package_type":"register","session_id":"SESS-A","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","cslr":3,"cslw":3,"csuw":3},"payload":{}}`,
	`{"control":{"type":"request","package_type":"register","session_id":"SESS-A","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","cslr":3,"cslw":null,"csuw":null},"payload":{}}`,
	`{"control":{"type":"request","package_type":"register","sequence":2,"version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","authorization":{"realm":"example.com","nonce":"abc","username":"alice","ha1":"deadbeef"}},"payload":{}}`,
	`{"control":{"type":"request","package_type":"call","session_id":"SESS-A","subsession_id":"c2","sequence":2,"correlation_id":"c2","ack_sequence":1,"version":"1.0"},"header":{"action":"start","initiator":"alice@example.com","target":"bob@example.com","x-custom":"hello"},"payload":{"sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}}`,
	`{"control":{"type":"response","package_type":"call","session_id":"SESS-B","subsession_id":"s1-B","sequence":2,"message_state":"subsequent","correlation_id":"s2","ack_sequence":2,"version":"1.0"},"header":{"action":"start","initiator":"alice@example.com","target":"bob@example.com"},"payload":{}}`,
	`{"control":{"type":"message","package_type":"call","session_id":"SESS-A","subsession_id":"c2","sequence":3,"correlation_id":"c2","version":"1.0"},"header":{"action":"complete"},"payload":{}}`,
	`{"control":{"type":"acknowledgement","package_type":"call","session_id":"SESS-alice","subsession_id":"c2","sequence":3,"version":"1.0"},"header":{},"payload":{}}`,
	`{"control":{"type":"error","package_type":"call","session_id":"SESS-bob","subsession_id":"sX","sequence":3,"correlation_id":"s2","ack_sequence":2,"version":"1.0"},"header":{"action":"start","initiator":"alice","target":"bob","error_code":486,"x-why":"busy"},"payload":{}}`,
	`{"control":{"type":"message","package_type":"call","session_id":"SESS-A","subsession_id":"u","sequence":4,"ack_sequence":2,"version":"1.0"},"header":{"action":"trickle","initiator":"alice","target":"bob"},"payload":{"candidates":"a=mid:audio\r\na=candidate:1 1 udp 2113937151 192.168.1.10 50000 typ host generation 0\r\na=end-of-candidates\r\n"}}`,
	`{"control":{"type":"request","package_type":"message_notification","session_id":"SESS-bob","subsession_id":"c2","sequence":2,"correlation_id":"c2","version":"1.0"},"header":{"action":"start","initiator":"bob","target":"sip:voicemail@example.com","x-ext":"1"},"payload":{}}`,
	`{"control":{"type":"response","package_type":"register","session_id":"SESS-A","sequence":4,"ack_sequence":3,"version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","sslr":3},"payload":{}}`,
}

func TestDecodeReferenceFrames(t *testing.T) {
	for _, in := range referenceFrames {
		f, err := Decode([]byte(in))
		if err != nil {
			t.Fatalf("Decode(%s): %v", in, err)
		}
		if err := Validate(f); err != nil {
			t.Fatalf("Validate(%s): %v", in, err)
		}
		// What parses must encode to the same JSON value and parse again
		// to the same frame.
		out := f.Marshal()
		if !jsonEqual(t, []byte(in), out) {
			t.Fatalf("round trip changed the frame:\n in: %s\nout: %s", in, out)
		}
		f2, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Marshal): %v", err)
		}
		if !reflect.DeepEqual(f, f2) {
			t.Fatalf("re-decoded frame differs:\n%+v\n%+v", f, f2)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}

func TestDecodeFields(t *testing.T) {
	f, err := Decode([]byte(referenceFrames[4]))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Control
	if c.Type != TypeRequest || c.Package != PackageCall || c.SessionID != "SESS-A" || c.SubsessionID != "c2" ||
		c.Sequence != 2 || c.CorrelationID != "c2" || c.AckSequence != 1 || c.Version != "1.0" {
		t.Fatalf("control = %+v", c)
	}
	if f.Header.Action != ActionStart || f.Header.Initiator != "alice@example.com" || f.Header.Target != "bob@example.com" {
		t.Fatalf("header = %+v", f.Header)
	}
	if e, ok := f.Header.ExtValue("x-custom"); !ok || e.Value != "hello" || e.Kind != ExtString {
		t.Fatalf("ext = %+v", f.Header.Ext)
	}
	var p CallPayload
	if err := DecodePayload(f.Payload, &p); err != nil || !strings.HasPrefix(p.SDP, "v=0\r\n") {
		t.Fatalf("payload = %+v, %v", p, err)
	}
	r, _ := Decode([]byte(referenceFrames[2]))
	if !r.Header.CSLW.Present || !r.Header.CSLW.Null || r.Header.CSLR.V != 3 || !r.IsReconnect() {
		t.Fatalf("reconnect header = %+v", r.Header)
	}
}

func TestDecodeEscapes(t *testing.T) {
	in := `{"control":{"type":"message","subsession_id":"a\"b\\c\u00e9\ud83d\ude00"},"header":{"action":"shutdown","reason":"x\ny"},"payload":{}}`
	f, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if f.Control.SubsessionID != "a\"b\\cé😀" || f.Header.Reason != "x\ny" {
		t.Fatalf("got %q %q", f.Control.SubsessionID, f.Header.Reason)
	}
	if f.EffectivePackage() != PackageCall {
		t.Fatal("absent package must mean call")
	}
	out := f.Marshal()
	if !jsonEqual(t, []byte(in), bytes.Replace(out, []byte(`,"version":"1.0"`), nil, 1)) {
		t.Fatalf("round trip: %s", out)
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		name, in string
		code     int
		reason   string
	}{
		{"not json", `hello`, 400, "not a JSON object"},
		{"array", `[1,2]`, 400, "not a JSON object"},
		{"truncated", `{"control":{"type":"request"`, 400, "malformed"},
		{"trailing", `{"control":{"type":"request"}} x`, 400, "trailing"},
		{"no control", `{"header":{}}`, 400, "control is missing"},
		{"control string", `{"control":"x"}`, 400, "control is not an object"},
		{"header array", `{"control":{},"header":[]}`, 400, "header is not an object"},
		{"payload string", `{"control":{},"payload":"x"}`, 400, "payload is not an object"},
		{"seq string", `{"control":{"type":"request","sequence":"2"}}`, 400, "control.sequence must be a number"},
		{"seq negative", `{"control":{"sequence":-1}}`, 400, "non-negative integer"},
		{"seq float", `{"control":{"sequence":1.5}}`, 400, "non-negative integer"},
		{"seq huge", `{"control":{"sequence":99999999999999999999}}`, 400, "non-negative integer"},
		{"type number", `{"control":{"type":1}}`, 400, "control.type must be a string"},
		{"code string", `{"control":{},"header":{"error_code":"486"}}`, 400, "error_code must be a number"},
		{"code range", `{"control":{},"header":{"error_code":99}}`, 400, "out of range"},
		{"ext crlf", `{"control":{},"header":{"x-a":"v\r\nVia: evil"}}`, 400, "control character"},
		{"ext nul", `{"control":{},"header":{"x-a":"v\u0000"}}`, 400, "control character"},
		{"ext name", `{"control":{},"header":{"x a":"v"}}`, 400, "not allowed"},
		{"ext name digit", `{"control":{},"header":{"1x":"v"}}`, 400, "not allowed"},
		{"ext object", `{"control":{},"header":{"x-a":{}}}`, 400, "string, number or boolean"},
		{"ext long", `{"control":{},"header":{"x-a":"` + strings.Repeat("a", 1025) + `"}}`, 400, "too long"},
		{"ext name long", `{"control":{},"header":{"` + strings.Repeat("a", 65) + `":"v"}}`, 400, "not allowed"},
		{"auth string", `{"control":{},"header":{"authorization":"x"}}`, 400, "must be an object"},
		{"bad utf8", "{\"control\":{\"type\":\"\xff\"}}", 400, "UTF-8"},
		{"raw ctl in string", "{\"control\":{\"type\":\"a\nb\"}}", 400, "malformed"},
		{"deep", `{"control":{},"payload":{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`, 400, "nested"},
		{"bad literal", `{"control":{"x":tru}}`, 400, "malformed"},
		{"bad number", `{"control":{"x":01}}`, 400, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.in))
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.Code != c.code || !strings.Contains(e.Reason, c.reason) {
				t.Fatalf("err = %d %q, want %d containing %q", e.Code, e.Reason, c.code, c.reason)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name, in string
		code     int
	}{
		{"ok connect", `{"control":{"type":"request","sequence":1},"header":{"action":"connect"}}`, 0},
		{"no type", `{"control":{},"header":{"action":"connect"}}`, 400},
		{"bad type", `{"control":{"type":"nope"},"header":{"action":"connect"}}`, 400},
		{"bad version", `{"control":{"type":"request","version":"2.0"},"header":{"action":"connect"}}`, 400},
		{"bad package", `{"control":{"type":"request","package_type":"fax","subsession_id":"a"},"header":{"action":"start"}}`, 400},
		{"unknown action", `{"control":{"type":"request","package_type":"call","subsession_id":"a"},"header":{"action":"fly"}}`, 405},
		{"action wrong package", `{"control":{"type":"request","package_type":"messaging"},"header":{"action":"start"}}`, 405},
		{"action wrong type", `{"control":{"type":"message","package_type":"call","subsession_id":"a"},"header":{"action":"prack"}}`, 405},
		{"error without code", `{"control":{"type":"error","package_type":"call","subsession_id":"a"},"header":{"action":"start"}}`, 400},
		{"no action", `{"control":{"type":"request","package_type":"call","subsession_id":"a"}}`, 400},
		{"no subsession", `{"control":{"type":"request","package_type":"call"},"header":{"action":"start"}}`, 400},
		{"ack ok", `{"control":{"type":"acknowledgement","package_type":"call","sequence":3},"header":{}}`, 0},
		{"send ok", `{"control":{"type":"request","package_type":"messaging","sequence":3},"header":{"action":"send","target":"bob"}}`, 0},
		{"bad state", `{"control":{"type":"response","message_state":"maybe","subsession_id":"a"},"header":{"action":"start"}}`, 400},
		{"replaces on transfer", `{"control":{"type":"request","package_type":"call","subsession_id":"a"},"header":{"action":"transfer","refer_to":"carol","replaces":"c2"}}`, 0},
		{"replaces on start", `{"control":{"type":"request","package_type":"call","subsession_id":"a"},"header":{"action":"start","replaces":"tok"}}`, 0},
		{"replaces on dtmf", `{"control":{"type":"message","package_type":"call","subsession_id":"a"},"header":{"action":"dtmf","replaces":"c2"}}`, 400},
		{"replaces on response", `{"control":{"type":"response","package_type":"call","subsession_id":"a"},"header":{"action":"transfer","replaces":"c2"}}`, 400},
		{"replaces long", `{"control":{"type":"request","package_type":"call","subsession_id":"a"},"header":{"action":"transfer","replaces":"` + strings.Repeat("r", 257) + `"}}`, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Decode([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(f)
			if c.code == 0 {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			if CodeOf(err) != c.code {
				t.Fatalf("err = %v, want %d", err, c.code)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\n\r\t", "é😀", "\u2028\u2029", "bad\xffutf8"} {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if got != want {
			t.Fatalf("%q -> %s -> %q", s, b, got)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data := []byte(referenceFrames[4])
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	var f Frame
	for b.Loop() {
		if err := DecodeInto(&f, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	f, _ := Decode([]byte(referenceFrames[4]))
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Append(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func TestClientErrorCode(t *testing.T) {
	for in, want := range map[int]int{486: 486, 603: 603, 404: 404, 500: 503, 200: 503, 180: 503, 700: 503, 0: 503} {
		if got := ClientErrorCode(in); got != want {
			t.Errorf("ClientErrorCode(%d) = %d, want %d", in, got, want)
		}
	}
}
