package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksServer serves a key set that a test can change, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys []map[string]string
	fail bool
	hits atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...map[string]string) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...map[string]string) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestJWKSRotation(t *testing.T) {
	k := testKeys()
	srv := newJWKSServer(t, jwk("k1", &k.rsa.PublicKey), jwk("e1", k.ed.Public()))
	a := newAuth(t, jwtApp("web", &JWTConfig{JWKS: &JWKSConfig{URL: srv.URL, Refresh: time.Hour, MinRefresh: time.Minute}}))
	clock := &fakeClock{now: time.Now()}
	a.now = clock.Now

	auth := func(method jwt.SigningMethod, key any, kid string) error {
		c := claims("alice@example.com")
		c["iat"] = clock.Now().Unix()
		c["exp"] = clock.Now().Add(24 * time.Hour).Unix()
		_, err := a.Authenticate(bearer(handshake("web"), sign(t, method, key, kid, c)))
		return err
	}
	if err := auth(jwt.SigningMethodRS256, k.rsa, "k1"); err != nil {
		t.Fatalf("k1: %v", err)
	}
	if err := auth(jwt.SigningMethodEdDSA, k.ed, "e1"); err != nil {
		t.Fatalf("e1: %v", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d fetches for two handshakes, want 1 (cached)", n)
	}

	// Rotation: a new key appears; a token naming it is accepted at once
	// (the unknown kid triggers a refresh), without a restart.
	clock.Add(2 * time.Minute)
	srv.set(jwk("k1", &k.rsa.PublicKey), jwk("k2", &k.ec.PublicKey))
	if err := auth(jwt.SigningMethodES256, k.ec, "k2"); err != nil {
		t.Fatalf("new kid k2 after rotation: %v", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	// A flood of made-up kids costs at most one fetch per min_refresh.
	for range 50 {
		if err := auth(jwt.SigningMethodES256, k.ec, "bogus"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("unknown kid: err = %v", err)
		}
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("%d fetches after a flood of unknown kids within min_refresh, want 2", n)
	}
	clock.Add(time.Minute)
	for range 50 {
		_ = auth(jwt.SigningMethodES256, k.ec, "bogus")
	}
	if n := srv.hits.Load(); n != 3 {
		t.Fatalf("%d fetches after min_refresh, want 3", n)
	}

	// Removal: k1 disappears. Until the next refresh the cached key still
	// verifies; after it, k1 is refused.
	srv.set(jwk("k2", &k.ec.PublicKey))
	if err := auth(jwt.SigningMethodRS256, k.rsa, "k1"); err != nil {
		t.Fatalf("k1 before the refresh: %v", err)
	}
	clock.Add(time.Hour)
	if err := auth(jwt.SigningMethodRS256, k.rsa, "k1"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("removed k1 after the refresh: err = %v", err)
	}
	if err := auth(jwt.SigningMethodES256, k.ec, "k2"); err != nil {
		t.Fatalf("k2 after the refresh: %v", err)
	}

	// The endpoint goes down: the keys held are kept.
	srv.mu.Lock()
	srv.fail = true
	srv.mu.Unlock()
	clock.Add(2 * time.Hour)
	if err := auth(jwt.SigningMethodES256, k.ec, "k2"); err != nil {
		t.Fatalf("k2 with the JWKS endpoint down: %v", err)
	}
	// HS256 never goes to the key set (it has no secrets).
	if err := auth(jwt.SigningMethodHS256, []byte(hsSecret), "k2"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("HS256 against a JWKS-only app: err = %v", err)
	}
}

func TestJWKSConcurrentUnknownKid(t *testing.T) {
	k := testKeys()
	srv := newJWKSServer(t, jwk("k1", &k.ec.PublicKey))
	a := newAuth(t, jwtApp("web", &JWTConfig{JWKS: &JWKSConfig{URL: srv.URL}}))
	tok := sign(t, jwt.SigningMethodES256, k.ec, "k1", claims("alice@example.com"))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 20 {
		wg.Go(func() {
			if _, err := a.Authenticate(bearer(handshake("web"), tok)); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 20 concurrent first handshakes failed", failed.Load())
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d fetches for 20 concurrent handshakes, want 1", n)
	}
}

func TestParseJWKS(t *testing.T) {
	k := testKeys()
	doc, _ := json.Marshal(map[string]any{"keys": []any{
		jwk("r", &k.rsa.PublicKey),
		jwk("e", &k.ec.PublicKey),
		jwk("d", k.ed.Public()),
		map[string]string{"kty": "oct", "kid": "s", "k": "c2VjcmV0"},
		map[string]string{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
		map[string]string{"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
		map[string]string{"kty": "EC", "kid": "offcurve", "crv": "P-256", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		func() map[string]string { m := jwk("mismatch", &k.rsa.PublicKey); m["alg"] = "HS256"; return m }(),
	}})
	keys, err := parseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, k := range keys {
		got[k.kid] = k.alg
	}
	want := map[string]string{"r": algRS256, "e": algES256, "d": algEdDSA}
	if len(got) != len(want) {
		t.Fatalf("keys = %v, want %v", got, want)
	}
	for kid, alg := range want {
		if got[kid] != alg {
			t.Errorf("key %s: alg %q, want %q", kid, got[kid], alg)
		}
	}
	if _, err := parseJWKS([]byte("{")); err == nil {
		t.Error("malformed key set accepted")
	}
}
