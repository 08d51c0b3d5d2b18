package templates

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
// t + "." + body)>" on each webhook request: the receiver recomputes it
// and refuses a timestamp too far from its clock (a replay).
const SignatureHeader = "X-Jsonrtc-Signature"

// maxAnswer bounds a webhook's answer: it becomes a frame's payload.
const maxAnswer = 64 << 10

type webhook struct {
	url     string
	secret  []byte
	timeout time.Duration
	retries int
}

// Sign is the SignatureHeader value of body at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature: a webhook request whose signature does not verify or
// whose timestamp is too far from now.
var ErrBadSignature = errors.New("templates: bad webhook signature")

// Verify checks a SignatureHeader value against body: what a webhook
// receiver does before it trusts the request.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, v1 string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp off by %s", ErrBadSignature, d)
	}
	if !hmac.Equal([]byte(v1), []byte(mac(secret, ts, body))) {
		return ErrBadSignature
	}
	return nil
}

// WebhookRequest is the JSON body POSTed for a request of the action.
type WebhookRequest struct {
	Package     protocol.Package  `json:"package"`
	Action      protocol.Action   `json:"action"`
	Identity    string            `json:"identity"`
	Application string            `json:"application,omitempty"`
	Target      string            `json:"target,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Payload     json.RawMessage   `json:"payload"`
}

// WebhookAnswer is what a webhook may answer (any 2xx with a JSON
// object): its payload becomes the response frame's payload; a 4xx's
// reason the error frame's.
type WebhookAnswer struct {
	Payload json.RawMessage `json:"payload"`
	Reason  string          `json:"reason"`
}

// CallWebhook POSTs the checked frame f of identity (of application app)
// to the action's webhook and returns the frame that answers f: a
// response with the webhook's payload on a 2xx; an error with the
// webhook's 4xx code; 502 after a 5xx, 504 after a timeout, once the
// retries are spent. It blocks for at most (retries+1) × timeout.
func (a *Action) CallWebhook(ctx context.Context, f *protocol.Frame, identity, app string) *protocol.Frame {
	wr := WebhookRequest{Package: a.Package, Action: a.Name, Identity: identity, Application: app,
		Target: f.Header.Target, Payload: f.Payload}
	if len(wr.Payload) == 0 {
		wr.Payload = json.RawMessage("{}")
	}
	if len(f.Header.Ext) > 0 {
		wr.Headers = map[string]string{}
		for _, e := range f.Header.Ext {
			wr.Headers[e.Name] = e.Value
		}
	}
	body, err := json.Marshal(wr)
	if err != nil {
		return answerTo(f, protocol.CodeServerError, "")
	}
	code, reason := protocol.CodeServerTimeout, "webhook did not answer"
	for try := 0; try <= a.webhook.retries && ctx.Err() == nil; try++ {
		var ans WebhookAnswer
		var retry bool
		code, ans, retry = a.post(ctx, body)
		switch {
		case code/100 == 2:
			out := answerTo(f, code, "")
			out.Payload = ans.Payload
			return out
		case !retry:
			return answerTo(f, code, ans.Reason)
		case code == protocol.CodeServerTimeout:
			reason = "webhook did not answer"
		default:
			code, reason = http.StatusBadGateway, "webhook failed"
		}
	}
	return answerTo(f, code, reason)
}

// post makes one attempt: the status (504 on a timeout or network
// failure) and the answer, and whether another attempt may do better.
func (a *Action) post(ctx context.Context, body []byte) (int, WebhookAnswer, bool) {
	var ans WebhookAnswer
	ctx, cancel := context.WithTimeout(ctx, a.webhook.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.webhook.url, bytes.NewReader(body))
	if err != nil {
		return protocol.CodeServerError, ans, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(a.webhook.secret, time.Now(), body))
	resp, err := a.client.Do(req)
	if err != nil {
		return protocol.CodeServerTimeout, ans, true
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return protocol.CodeServerTimeout, ans, true
	case resp.StatusCode >= 500:
		return resp.StatusCode, ans, true
	case resp.StatusCode/100 == 2:
		if len(raw) > maxAnswer || json.Unmarshal(raw, &ans) != nil || !wireSafe(ans.Payload) {
			return http.StatusBadGateway, WebhookAnswer{Reason: "webhook answer is not {\"payload\": {...}}"}, false
		}
		return resp.StatusCode, ans, false
	case resp.StatusCode >= 400:
		_ = json.Unmarshal(raw, &ans)
		if len(ans.Reason) > 256 {
			ans.Reason = ans.Reason[:256]
		}
		return resp.StatusCode, ans, false
	}
	// 1xx, 3xx (redirects are not followed: push.GuardedClient).
	return http.StatusBadGateway, WebhookAnswer{Reason: "webhook answered " + resp.Status}, false
}

func isObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return len(raw) > 0 && json.Unmarshal(raw, &m) == nil && m != nil
}
