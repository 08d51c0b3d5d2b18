package push

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// The webhook's headers: the Unix time of the request, and
// "v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>".
const (
	HeaderTimestamp = "Jsonrtc-Push-Timestamp"
	HeaderSignature = "Jsonrtc-Push-Signature"
)

// ErrBadSignature: a webhook request whose signature does not verify,
// or whose timestamp is outside the tolerance (a replay).
var ErrBadSignature = errors.New("push: bad webhook signature")

// Webhook POSTs push messages to a native app's relay, signed with a
// secret the two share.
type Webhook struct {
	URL    string
	Secret []byte
	// HTTPClient makes the requests. Default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock of the timestamp. Default time.Now.
	Now func() time.Time
}

// sign is the signature header value of body at ts.
func sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Send POSTs body (JSON) to the webhook, signed.
func (w *Webhook) Send(ctx context.Context, body []byte) error {
	if len(w.Secret) == 0 {
		return errors.New("push: webhook without a secret")
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	hc := w.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sign(w.Secret, ts, body))
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("push: webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push: webhook answered %s", resp.Status)
	}
	return nil
}

// VerifyWebhook checks a webhook request's signature and that its
// timestamp is within tolerance of now (a replayed request is refused):
// what the receiving relay does before it trusts body.
func VerifyWebhook(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts := h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrBadSignature, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %s off by %s", ErrBadSignature, ts, d)
	}
	if !hmac.Equal([]byte(h.Get(HeaderSignature)), []byte(sign(secret, ts, body))) {
		return ErrBadSignature
	}
	return nil
}
