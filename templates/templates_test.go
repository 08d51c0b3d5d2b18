package templates

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

func parse(t testing.TB, src string) Config {
	t.Helper()
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

const good = `
webhook_networks: [127.0.0.0/8]
actions:
  - action: x-score
    package: call
    headers: {required: [X-Game], optional: [X-Round]}
    schema:
      type: object
      required: [points]
      properties:
        points: {type: integer, minimum: 0}
        player: {type: object, properties: {name: {type: string, maxLength: 8}}}
    sip: {method: INFO, info_package: x-score, content_type: application/json}
  - action: x-lookup
    package: messaging
    webhook: {url: "http://127.0.0.1:1/hook", secret: 0123456789abcdef, timeout: 2s, retries: 1}
  - action: x-note
    package: messaging
    sip: {method: MESSAGE, content_type: text/plain}
`

func TestConfigValid(t *testing.T) {
	s, err := New(parse(t, good))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Lookup(protocol.PackageCall, "x-score")
	if a == nil || a.SIP.Method != "INFO" || s.ForInfo("X-Score") != a {
		t.Fatalf("x-score not found: %+v", a)
	}
	if s.Lookup(protocol.PackageMessaging, "x-score") != nil {
		t.Fatal("x-score found in messaging")
	}
	if !s.Lookup(protocol.PackageMessaging, "x-lookup").IsWebhook() {
		t.Fatal("x-lookup is not a webhook")
	}
}

// TestConfigInvalid: each bad key is named by its path.
func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"action name", `actions: [{action: "1x", package: call, sip: {method: INFO, info_package: a}}]`, "templates.actions[0].action"},
		{"builtin action", `actions: [{action: start, package: call, sip: {method: INFO, info_package: a}}]`, "is an action of package call already"},
		{"package", `actions: [{action: x, package: presence, sip: {method: MESSAGE}}]`, "templates.actions[0].package"},
		{"both", `actions: [{action: x, package: messaging, sip: {method: MESSAGE}, webhook: {url: "https://a", secret: 0123456789abcdef}}]`, "exactly one of sip and webhook"},
		{"method", `actions: [{action: x, package: call, sip: {method: INVITE}}]`, "templates.actions[0].sip.method"},
		{"info out of dialog", `actions: [{action: x, package: messaging, sip: {method: INFO, info_package: a}}]`, "sent in a dialog only"},
		{"info without package", `actions: [{action: x, package: call, sip: {method: INFO}}]`, "templates.actions[0].sip.info_package"},
		{"trickle", `actions: [{action: x, package: call, sip: {method: INFO, info_package: trickle-ice}}]`, "the gateway's own"},
		{"notify event", `actions: [{action: x, package: call, sip: {method: NOTIFY}}]`, "templates.actions[0].sip.event"},
		{"content type", `actions: [{action: x, package: call, sip: {method: MESSAGE, content_type: "text"}}]`, "templates.actions[0].sip.content_type"},
		{"header", `actions: [{action: x, package: call, headers: {required: ["bad name"]}, sip: {method: MESSAGE}}]`, "templates.actions[0].headers.required[0]"},
		{"schema", `actions: [{action: x, package: call, schema: {type: 12}, sip: {method: MESSAGE}}]`, "templates.actions[0].schema"},
		{"url", `actions: [{action: x, package: messaging, webhook: {url: "ftp://a", secret: 0123456789abcdef}}]`, "templates.actions[0].webhook.url"},
		{"secret", `actions: [{action: x, package: messaging, webhook: {url: "https://a", secret: short}}]`, "templates.actions[0].webhook.secret"},
		{"retries", `actions: [{action: x, package: messaging, webhook: {url: "https://a", secret: 0123456789abcdef, retries: 9}}]`, "templates.actions[0].webhook.retries"},
		{"twice", `actions: [{action: x, package: call, sip: {method: MESSAGE}}, {action: x, package: call, sip: {method: OPTIONS}}]`, "templates.actions[1].action: x is declared twice"},
		{"network", `webhook_networks: [nope]`, "templates.webhook_networks[0]"},
		{"answer timeout", `answer_timeout: 40s`, "templates.answer_timeout"},
		{"receive options", `actions: [{action: x, package: call, sip: {method: OPTIONS, receive: true}}]`, "templates.actions[0].sip.receive"},
		{"receive notify out of dialog", `actions: [{action: x, package: messaging, sip: {method: NOTIFY, event: x-e, receive: true}}]`, "templates.actions[0].sip.receive"},
		{"receive sdp", `actions: [{action: x, package: call, sip: {method: UPDATE, content_type: application/sdp, receive: true}}]`, "templates.actions[0].sip.receive"},
		{"receive instant message", `actions: [{action: x, package: messaging, sip: {method: MESSAGE, content_type: text/plain, receive: true}}]`, "templates.actions[0].sip.receive"},
		{"receive twice", `actions: [{action: x, package: call, sip: {method: NOTIFY, event: x-e, receive: true}}, {action: y, package: call, sip: {method: NOTIFY, event: "X-E;id=1", receive: true}}]`,
			"templates.actions[1].sip.event: x-e of call NOTIFY is received by action x already"},
		{"receive content type twice", `actions: [{action: x, package: call, sip: {method: MESSAGE, receive: true}}, {action: y, package: call, sip: {method: MESSAGE, receive: true}}]`,
			"templates.actions[1].sip.content_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parse(t, tc.src).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestForRequest: a receiving action is found by its method and mark
// (without case or parameters), in its package only; one that does not
// receive is not.
func TestForRequest(t *testing.T) {
	s, err := New(parse(t, `
answer_timeout: 5s
actions:
  - {action: x-score, package: call, sip: {method: INFO, info_package: x-score}}
  - {action: x-alert, package: call, sip: {method: NOTIFY, event: x-alert, receive: true}}
  - {action: x-card, package: call, sip: {method: MESSAGE, content_type: application/x-card+json, receive: true}}
  - {action: x-state, package: call, sip: {method: UPDATE, content_type: application/x-state+json, receive: true}}
  - {action: x-page, package: messaging, sip: {method: MESSAGE, content_type: application/x-page+json, receive: true}}
  - {action: x-send, package: call, sip: {method: MESSAGE, content_type: application/x-send+json}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pkg          protocol.Package
		method, mark string
		want         protocol.Action
	}{
		{protocol.PackageCall, "INFO", "X-Score", "x-score"},
		{protocol.PackageMessaging, "INFO", "x-score", ""},
		{protocol.PackageCall, "NOTIFY", "X-Alert;id=7", "x-alert"},
		{protocol.PackageCall, "MESSAGE", "Application/X-Card+JSON; charset=utf-8", "x-card"},
		{protocol.PackageMessaging, "MESSAGE", "application/x-card+json", ""},
		{protocol.PackageCall, "UPDATE", "application/x-state+json", "x-state"},
		{protocol.PackageMessaging, "MESSAGE", "application/x-page+json", "x-page"},
		{protocol.PackageCall, "MESSAGE", "application/x-send+json", ""},
		{protocol.PackageCall, "NOTIFY", "refer", ""},
	} {
		var got protocol.Action
		if a := s.ForRequest(tc.pkg, tc.method, tc.mark); a != nil {
			got = a.Name
		}
		if got != tc.want {
			t.Errorf("%s %s %q: %q, want %q", tc.pkg, tc.method, tc.mark, got, tc.want)
		}
	}
	if s.AnswerTimeout() != 5*time.Second || (*Set)(nil).AnswerTimeout() != DefaultAnswerTimeout {
		t.Fatalf("answer timeout %v", s.AnswerTimeout())
	}
}

func frame(payload string, ext ...protocol.Ext) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1", Sequence: 4},
		Header:  protocol.Header{Action: "x-score", Ext: ext},
		Payload: json.RawMessage(payload),
	}
}

// TestCheck: headers and payload errors name the header or the field.
func TestCheck(t *testing.T) {
	s, err := New(parse(t, good))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Lookup(protocol.PackageCall, "x-score")
	game := protocol.Ext{Name: "X-Game", Value: "chess"}
	for _, tc := range []struct {
		name string
		f    *protocol.Frame
		want string
	}{
		{"ok", frame(`{"points":3}`, game), ""},
		{"missing header", frame(`{"points":3}`), "header.X-Game is required"},
		{"undeclared header", frame(`{"points":3}`, game, protocol.Ext{Name: "X-Other", Value: "1"}), "header.X-Other is not a header"},
		{"missing field", frame(`{}`, game), "payload: missing property 'points'"},
		{"bad type", frame(`{"points":"3"}`, game), "payload.points: got string, want integer"},
		{"minimum", frame(`{"points":-1}`, game), "payload.points: minimum: got -1, want 0"},
		{"nested", frame(`{"points":1,"player":{"name":"a long name"}}`, game), "payload.player.name: maxLength: got 11, want 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Check(tc.f)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if protocol.CodeOf(err) != 400 || !strings.Contains(protocol.ReasonOf(err), tc.want) {
				t.Fatalf("err = %v, want 400 %q", err, tc.want)
			}
		})
	}
}

func TestSIPMapping(t *testing.T) {
	s, err := New(parse(t, good))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Lookup(protocol.PackageCall, "x-score")
	f := frame(`{"points":3}`, protocol.Ext{Name: "X-Game", Value: "chess"})
	r := a.SIPRequest(f)
	if r.Method != "INFO" || r.InfoPackage != "x-score" || r.ContentType != "application/json" || string(r.Body) != `{"points":3}` ||
		len(r.Headers) != 1 || r.Headers[0] != (sipgw.Header{Name: "X-Game", Value: "chess"}) {
		t.Fatalf("request = %+v", r)
	}
	ok := a.SIPAnswer(f, sipgw.Answer{Code: 200, Reason: "OK", ContentType: "application/json", Body: []byte(`{"rank":1}`),
		Headers: []sipgw.Header{{Name: "X-Round", Value: "2"}, {Name: "X-Secret", Value: "no"}}}, nil)
	if ok.Control.Type != protocol.TypeResponse || ok.Header.ResponseCode != 200 || string(ok.Payload) != `{"rank":1}` ||
		ok.Control.CorrelationID != "c4" || len(ok.Header.Ext) != 1 || ok.Header.Ext[0].Name != "X-Round" {
		t.Fatalf("answer = %+v", ok)
	}
	no := a.SIPAnswer(f, sipgw.Answer{Code: 469, Reason: "Bad Info Package"}, nil)
	if no.Control.Type != protocol.TypeError || no.Header.ErrorCode != 469 || no.Header.Reason != "Bad Info Package" {
		t.Fatalf("error = %+v", no)
	}
	timeout := a.SIPAnswer(f, sipgw.Answer{}, context.DeadlineExceeded)
	if timeout.Header.ErrorCode != 408 {
		t.Fatalf("timeout = %+v", timeout)
	}
	note := s.Lookup(protocol.PackageMessaging, "x-note")
	if r := note.SIPRequest(frame(`{"body":"hello"}`)); string(r.Body) != "hello" || r.ContentType != "text/plain" {
		t.Fatalf("note = %+v", r)
	}
	in := a.IncomingFrame("application/json", []byte(`{"points":9}`), []sipgw.Header{{Name: "x-game", Value: "go"}, {Name: "Via", Value: "x"},
		{Name: "X-Round", Value: strings.Repeat("9", 1025)}, {Name: "X-Round", Value: "a\x01b"}})
	if in.Header.Action != "x-score" || string(in.Payload) != `{"points":9}` || len(in.Header.Ext) != 1 || in.Header.Ext[0] != (protocol.Ext{Name: "X-Game", Value: "go"}) {
		t.Fatalf("incoming = %+v", in)
	}
	resp := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeError}, Header: protocol.Header{ErrorCode: 486, Reason: "busy"}}
	if ans := a.IncomingAnswer(resp); ans.Code != 486 || ans.Reason != "busy" {
		t.Fatalf("incoming answer = %+v", ans)
	}
}

// TestWebhook: the request is signed and carries the frame; the answer
// becomes the response; a 5xx is retried; a 4xx is the error.
func TestWebhook(t *testing.T) {
	secret := []byte("0123456789abcdef")
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, r.Header.Get(SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("signature: %v", err)
		}
		if Verify([]byte("another secret!!"), r.Header.Get(SignatureHeader), body, time.Now(), time.Minute) == nil {
			t.Error("signature verifies with another secret")
		}
		var req WebhookRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Error(err)
		}
		switch n := calls.Add(1); {
		case req.Identity == "refused":
			w.WriteHeader(403)
			io.WriteString(w, `{"reason":"not you"}`)
		case n == 1:
			w.WriteHeader(503) // retried
		default:
			if req.Action != "x-lookup" || req.Headers["X-Q"] != "1" || string(req.Payload) != `{"q":"bob"}` {
				t.Errorf("request = %+v", req)
			}
			io.WriteString(w, `{"payload":{"found":true}}`)
		}
	}))
	defer srv.Close()
	c := parse(t, good)
	c.Actions[1].Webhook.URL = srv.URL
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	a := s.Lookup(protocol.PackageMessaging, "x-lookup")
	a.headers["X-Q"] = false
	f := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging, CorrelationID: "q1"},
		Header: protocol.Header{Action: "x-lookup", Ext: []protocol.Ext{{Name: "X-Q", Value: "1"}}}, Payload: json.RawMessage(`{"q":"bob"}`)}
	out := a.CallWebhook(context.Background(), f, "alice@example.com", "demo")
	if out.Control.Type != protocol.TypeResponse || out.Header.ResponseCode != 200 || string(out.Payload) != `{"found":true}` || out.Control.CorrelationID != "q1" {
		t.Fatalf("answer = %+v %s", out, out.Payload)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d calls, want 2 (one retry)", calls.Load())
	}
	out = a.CallWebhook(context.Background(), f, "refused", "demo")
	if out.Control.Type != protocol.TypeError || out.Header.ErrorCode != 403 || out.Header.Reason != "not you" {
		t.Fatalf("refusal = %+v", out)
	}
}

// TestWebhookGuarded: without webhook_networks, an internal address is
// refused when dialled (SSRF), and the client gets 504 without a hang.
func TestWebhookGuarded(t *testing.T) {
	var hit atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit.Store(true) }))
	defer srv.Close()
	c := parse(t, good)
	c.WebhookNetworks = nil
	c.Actions[1].Webhook.URL = srv.URL
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	f := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging, Sequence: 2},
		Header: protocol.Header{Action: "x-lookup"}}
	out := s.Lookup(protocol.PackageMessaging, "x-lookup").CallWebhook(context.Background(), f, "a@b", "")
	if hit.Load() || out.Header.ErrorCode != 504 {
		t.Fatalf("guard let it through: hit %v, answer %+v", hit.Load(), out)
	}
}

func TestVerifyRefusesReplay(t *testing.T) {
	secret, body := []byte("0123456789abcdef"), []byte(`{}`)
	old := Sign(secret, time.Now().Add(-time.Hour), body)
	if err := Verify(secret, old, body, time.Now(), time.Minute); err == nil {
		t.Fatal("an hour-old signature verified")
	}
	if err := Verify(secret, Sign(secret, time.Now(), body), []byte(`{"x":1}`), time.Now(), time.Minute); err == nil {
		t.Fatal("a changed body verified")
	}
}

// TestPayloadOfUnsafeBody: a SIP body the clients' decoder would refuse
// (invalid UTF-8, nesting too deep) reaches them as a string, not as
// the payload.
func TestPayloadOfUnsafeBody(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)
	for _, body := range []string{"{\"a\":\"\xff\"}", deep, `{"a":1} x`, `[1]`} {
		p := payloadOf("application/json", []byte(body))
		var bp bodyPayload
		if err := json.Unmarshal(p, &bp); err != nil || bp.Body == "" {
			t.Errorf("%q: payload %s", body, p)
		}
		if _, err := protocol.Decode(append(append([]byte(`{"control":{"type":"message"},"payload":`), p...), '}')); err != nil {
			t.Errorf("%q: the frame does not decode: %v", body, err)
		}
	}
	if p := payloadOf("application/json", []byte(`{"ok":true}`)); string(p) != `{"ok":true}` {
		t.Errorf("a plain object: %s", p)
	}
}

// TestFailureOf: a declared request that fails gives the client a
// reason in words, never a Go error's text naming our packages.
func TestFailureOf(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   int
		reason string
	}{
		{sipgw.ErrCallState, 405, "not in an answered SIP call"},
		{&sipgw.ResponseError{Code: 481, Reason: "no such call"}, 481, "no such call"},
		{fmt.Errorf("queue: %w", context.DeadlineExceeded), 408, protocol.Reason(408)},
	} {
		code, reason := failureOf(tc.err)
		if code != tc.code || reason != tc.reason || strings.Contains(reason, "sipgw") {
			t.Errorf("failureOf(%v) = %d %q, want %d %q", tc.err, code, reason, tc.code, tc.reason)
		}
	}
}
