package push

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RFC 8291 Appendix A, its example's values (base64url).
const (
	rfcPlaintext = "When I grow up, I want to be a watermelon"
	rfcASPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
	rfcASPublic  = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
	rfcUAPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
	rfcUAPublic  = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
	rfcAuth      = "BTBZMqHH6r4Tts7J_aSIgg"
	rfcSalt      = "DGv6ra1nlYgDCS1FRnbzlw"
	rfcBody      = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := b64.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRFC8291Example(t *testing.T) {
	as, err := ecdh.P256().NewPrivateKey(unb64(t, rfcASPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if got := b64.EncodeToString(as.PublicKey().Bytes()); got != rfcASPublic {
		t.Fatalf("as_public %s", got)
	}
	body, err := encrypt([]byte(rfcPlaintext), unb64(t, rfcUAPublic), unb64(t, rfcAuth), as, unb64(t, rfcSalt))
	if err != nil {
		t.Fatal(err)
	}
	if got := b64.EncodeToString(body); got != rfcBody {
		t.Fatalf("body\n got %s\nwant %s", got, rfcBody)
	}
	// And the user agent's side, written here from RFC 8291 §3.4, reads it.
	plain, err := Decrypt(unb64(t, rfcBody), unb64(t, rfcUAPrivate), unb64(t, rfcAuth))
	if err != nil || string(plain) != rfcPlaintext {
		t.Fatalf("decrypt: %q, %v", plain, err)
	}
}

// browser is a subscription's user agent: its keys.
type browser struct {
	key  *ecdh.PrivateKey
	auth []byte
	sub  Subscription
}

func newBrowser(t *testing.T, endpoint string) *browser {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{key: k, auth: make([]byte, 16)}
	rand.Read(b.auth)
	b.sub.Endpoint = endpoint
	b.sub.Keys.P256DH = b64.EncodeToString(k.PublicKey().Bytes())
	b.sub.Keys.Auth = b64.EncodeToString(b.auth)
	return b
}

func TestEncryptRoundTripAndLimits(t *testing.T) {
	b := newBrowser(t, "https://push.example/x")
	for _, n := range []int{0, 1, 100, MaxPayload} {
		p := bytes.Repeat([]byte{'a'}, n)
		body, err := Encrypt(b.sub, p)
		if err != nil {
			t.Fatalf("%d octets: %v", n, err)
		}
		if len(body) > recordSize {
			t.Fatalf("%d octets: a body of %d", n, len(body))
		}
		got, err := Decrypt(body, b.key.Bytes(), b.auth)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%d octets: round trip %v", n, err)
		}
	}
	if _, err := Encrypt(b.sub, make([]byte, MaxPayload+1)); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	bad := b.sub
	bad.Keys.Auth = "short"
	if _, err := Encrypt(bad, nil); !errors.Is(err, ErrBadSubscription) {
		t.Fatalf("bad auth: %v", err)
	}
	bad = b.sub
	bad.Keys.P256DH = b64.EncodeToString([]byte("not a point"))
	if _, err := Encrypt(bad, nil); !errors.Is(err, ErrBadSubscription) {
		t.Fatalf("bad p256dh: %v", err)
	}
}

func newVAPID(t *testing.T) VAPID {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return VAPID{Key: k, Subject: "mailto:ops@example.com"}
}

// checkVAPID verifies an Authorization header as a push service does
// (RFC 8292 §3-4), with golang-jwt: ES256 by the key in k, audience the
// endpoint's origin, expiry within 24 hours.
func checkVAPID(t *testing.T, header, origin string, now time.Time) {
	t.Helper()
	rest, ok := strings.CutPrefix(header, "vapid ")
	if !ok {
		t.Fatalf("scheme: %q", header)
	}
	var tok, k string
	for _, p := range strings.Split(rest, ",") {
		p = strings.TrimSpace(p)
		if v, ok := strings.CutPrefix(p, "t="); ok {
			tok = v
		}
		if v, ok := strings.CutPrefix(p, "k="); ok {
			k = v
		}
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), unb64(t, k))
	if err != nil {
		t.Fatalf("k: %v", err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(origin), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		t.Fatalf("VAPID token: %v", err)
	}
	exp, _ := claims.GetExpirationTime()
	if d := exp.Sub(now); d <= 0 || d > 24*time.Hour {
		t.Fatalf("expires in %s", d)
	}
	if claims["sub"] != "mailto:ops@example.com" {
		t.Fatalf("sub %v", claims["sub"])
	}
}

func TestVAPIDVerifiesWithJWT(t *testing.T) {
	v := newVAPID(t)
	now := time.Unix(1_800_000_000, 0)
	h, err := v.Authorization("https://push.example.net:8443/wpush/v2/abc?x=1", now)
	if err != nil {
		t.Fatal(err)
	}
	checkVAPID(t, h, "https://push.example.net:8443", now)
	if _, err := v.Authorization("/relative", now); err == nil {
		t.Fatal("a relative endpoint accepted")
	}
}

// TestSendToPushService: a push service written for the test (RFC 8030
// §5) checks the request's headers and VAPID token, decrypts the body as
// the browser will, and answers 201; a dropped subscription is ErrGone.
func TestSendToPushService(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var b *browser
	got := make(chan []byte, 1)
	status := http.StatusCreated
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("TTL") != "30" || r.Header.Get("Urgency") != "high" {
			http.Error(w, "bad request headers", http.StatusBadRequest)
			return
		}
		checkVAPID(t, r.Header.Get("Authorization"), "http://"+r.Host, now)
		body, _ := io.ReadAll(r.Body)
		plain, err := Decrypt(body, b.key.Bytes(), b.auth)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- plain
		w.WriteHeader(status)
	}))
	defer svc.Close()
	b = newBrowser(t, svc.URL+"/push/sub-1")
	s, err := NewSender(Options{VAPID: newVAPID(t), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	m := Message{Payload: []byte(`{"kind":"call","from":"alice@example.com"}`), TTL: 30 * time.Second, Urgency: UrgencyHigh}
	if err := s.Send(context.Background(), b.sub, m); err != nil {
		t.Fatal(err)
	}
	if p := <-got; string(p) != string(m.Payload) {
		t.Fatalf("the browser read %q", p)
	}
	status = http.StatusGone
	if err := s.Send(context.Background(), b.sub, m); !errors.Is(err, ErrGone) {
		t.Fatalf("410: %v", err)
	}
	<-got
	if _, err := NewSender(Options{}); err == nil {
		t.Fatal("a sender without a VAPID key")
	}
}

func TestWebhookSignature(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1_800_000_000, 0)
	type req struct {
		h    http.Header
		body []byte
	}
	got := make(chan req, 1)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- req{r.Header.Clone(), body}
		if VerifyWebhook(secret, r.Header, body, now, time.Minute) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
		}
	}))
	defer relay.Close()
	w := &Webhook{URL: relay.URL, Secret: secret, Now: func() time.Time { return now }}
	body := []byte(`{"kind":"message","from":"bob@example.com"}`)
	if err := w.Send(context.Background(), body); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if err := VerifyWebhook(secret, r.h, append(bytes.Clone(r.body), ' '), now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered body: %v", err)
	}
	if err := VerifyWebhook([]byte("other"), r.h, r.body, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other secret: %v", err)
	}
	if err := VerifyWebhook(secret, r.h, r.body, now.Add(2*time.Minute), time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("replayed later: %v", err)
	}
	w.Secret = []byte("wrong")
	if err := w.Send(context.Background(), body); err == nil {
		t.Fatal("a refused webhook is no error")
	}
	<-got
}
