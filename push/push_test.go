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
	"net/netip"
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

// TestRFC8291Example pins the test-side decrypter (what the browser
// does, written here from RFC 8291 §3.4) to the RFC's own example record:
// the push services of the tests below read what webpush-go sends with it.
func TestRFC8291Example(t *testing.T) {
	plain, err := Decrypt(unb64(t, rfcBody), unb64(t, rfcUAPrivate), unb64(t, rfcAuth))
	if err != nil || string(plain) != rfcPlaintext {
		t.Fatalf("decrypt: %q, %v", plain, err)
	}
	// The record's header names the RFC's sender key and salt.
	body := unb64(t, rfcBody)
	if !bytes.Equal(body[:saltLen], unb64(t, rfcSalt)) || b64.EncodeToString(body[saltLen+5:headerLen]) != rfcASPublic {
		t.Fatal("header")
	}
	ua, err := ecdh.P256().NewPrivateKey(unb64(t, rfcUAPrivate))
	if err != nil || b64.EncodeToString(ua.PublicKey().Bytes()) != rfcUAPublic {
		t.Fatalf("ua key: %v", err)
	}
	// One flipped bit of the ciphertext, and the record does not open.
	body[len(body)-1] ^= 1
	if _, err := Decrypt(body, unb64(t, rfcUAPrivate), unb64(t, rfcAuth)); err == nil {
		t.Fatal("a tampered record decrypted")
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

func TestCheckSubscription(t *testing.T) {
	b := newBrowser(t, "https://push.example/x")
	if err := CheckSubscription(b.sub); err != nil {
		t.Fatal(err)
	}
	bad := b.sub
	bad.Keys.Auth = "short"
	if err := CheckSubscription(bad); !errors.Is(err, ErrBadSubscription) {
		t.Fatalf("bad auth: %v", err)
	}
	bad = b.sub
	bad.Keys.P256DH = b64.EncodeToString([]byte("not a point"))
	if err := CheckSubscription(bad); !errors.Is(err, ErrBadSubscription) {
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
func checkVAPID(t *testing.T, header, origin, wantK string, now time.Time) {
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
	if k != wantK {
		t.Fatalf("k=%s, the VAPID key is %s", k, wantK)
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

// TestSendToPushService: a push service written for the test (RFC 8030
// §5) checks the request's headers and the VAPID token webpush-go signed
// (golang-jwt, against the gateway's own public key), decrypts the body
// as the browser will, and answers 201; a dropped subscription is
// ErrGone.
func TestSendToPushService(t *testing.T) {
	var b *browser
	v := newVAPID(t)
	wantK, err := v.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	status := http.StatusCreated
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("TTL") != "30" || r.Header.Get("Urgency") != "high" {
			http.Error(w, "bad request headers", http.StatusBadRequest)
			return
		}
		checkVAPID(t, r.Header.Get("Authorization"), "http://"+r.Host, wantK, time.Now())
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
	s, err := NewSender(Options{VAPID: v, HTTPClient: GuardedClient(func(ap netip.AddrPort) bool { return ap.Addr().IsLoopback() })})
	if err != nil {
		t.Fatal(err)
	}
	m := Message{TTL: 30 * time.Second, Urgency: UrgencyHigh}
	for _, n := range []int{0, 1, 100, MaxPayload} {
		m.Payload = bytes.Repeat([]byte{'a'}, n)
		if err := s.Send(context.Background(), b.sub, m); err != nil {
			t.Fatalf("%d octets: %v", n, err)
		}
		if p := <-got; !bytes.Equal(p, m.Payload) {
			t.Fatalf("%d octets: the browser read %q", n, p)
		}
	}
	m.Payload = make([]byte, MaxPayload+1)
	if err := s.Send(context.Background(), b.sub, m); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	m.Payload = []byte(`{"kind":"call","from":"alice@example.com"}`)
	status = http.StatusGone
	if err := s.Send(context.Background(), b.sub, m); !errors.Is(err, ErrGone) {
		t.Fatalf("410: %v", err)
	}
	<-got
	if _, err := NewSender(Options{}); err == nil {
		t.Fatal("a sender without a VAPID key")
	}
}

// TestGuardedClientRefusesInternal: a push endpoint whose name resolves
// to loopback is refused when it is dialed, whatever the name; the
// default Sender dials nothing internal, and follows no redirect.
func TestGuardedClientRefusesInternal(t *testing.T) {
	hits := make(chan string, 4)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.URL.Path
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/inside", http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer svc.Close()
	_, port, _ := strings.Cut(svc.Listener.Addr().String(), ":")
	b := newBrowser(t, "http://localhost:"+port+"/push/sub-1")
	s, err := NewSender(Options{VAPID: newVAPID(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), b.sub, Message{}); !errors.Is(err, ErrInternalAddress) {
		t.Fatalf("a name resolving to loopback: %v", err)
	}
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "192.168.1.1", "169.254.169.254", "100.64.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "0.0.0.0"} {
		if !Internal(netip.MustParseAddr(ip)) {
			t.Errorf("%s is not internal", ip)
		}
	}
	for _, ip := range []string{"8.8.8.8", "2606:4700::1111"} {
		if Internal(netip.MustParseAddr(ip)) {
			t.Errorf("%s is internal", ip)
		}
	}
	c := GuardedClient(func(ap netip.AddrPort) bool { return ap.Addr().IsLoopback() })
	resp, err := c.Get(svc.URL + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || <-hits != "/redirect" || len(hits) != 0 {
		t.Fatalf("redirect followed: %s", resp.Status)
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
