package auth

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestMaxLifetime(t *testing.T) {
	a := newAuth(t, jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}, MaxLifetime: time.Hour}))
	now := time.Now()
	tok := func(mod func(jwt.MapClaims)) string {
		c := claims("alice@example.com")
		mod(c)
		return sign(t, jwt.SigningMethodHS256, []byte(hsSecret), "", c)
	}
	for _, tc := range []struct {
		name string
		tok  string
		want error
	}{
		{"within", tok(func(c jwt.MapClaims) { c["exp"] = now.Add(time.Hour).Unix() }), nil},
		{"too long", tok(func(c jwt.MapClaims) { c["exp"] = now.Add(time.Hour + time.Minute).Unix() }), ErrInvalidToken},
		{"a year", tok(func(c jwt.MapClaims) { c["exp"] = now.Add(365 * 24 * time.Hour).Unix() }), ErrInvalidToken},
		{"no iat", tok(func(c jwt.MapClaims) { delete(c, "iat") }), ErrInvalidToken},
	} {
		_, err := a.Authenticate(bearer(handshake("web"), tc.tok))
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Without max_lifetime, a token without iat is fine.
	b := newAuth(t, jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}}))
	if _, err := b.Authenticate(bearer(handshake("web"), tok(func(c jwt.MapClaims) { delete(c, "iat") }))); err != nil {
		t.Fatalf("no max_lifetime, no iat: %v", err)
	}
	if err := (Config{Applications: []AppConfig{jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}, MaxLifetime: time.Second})}}).Validate(); err == nil {
		t.Fatal("max_lifetime of 1s accepted")
	}
}

func TestRevokeOnLogout(t *testing.T) {
	a := newAuth(t,
		jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}, RevokeOnLogout: true}),
		jwtApp("plain", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}}))
	withJTI := claims("alice@example.com")
	withJTI["jti"] = "t-1"
	for name, tok := range map[string]string{
		"jti":    sign(t, jwt.SigningMethodHS256, []byte(hsSecret), "", withJTI),
		"no jti": sign(t, jwt.SigningMethodHS256, []byte(hsSecret), "", claims("bob@example.com")),
	} {
		p, err := a.Authenticate(bearer(handshake("web"), tok))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// A reconnect (resume) before any logout is fine.
		if _, err := a.Authenticate(bearer(handshake("web"), tok)); err != nil {
			t.Fatalf("%s: second handshake before logout: %v", name, err)
		}
		a.Logout(p)
		_, err = a.Authenticate(bearer(handshake("web"), tok))
		if !errors.Is(err, ErrTokenRevoked) || Status(err) != 401 {
			t.Fatalf("%s: after logout: %v", name, err)
		}
		// The same token on an application without revoke_on_logout.
		q, err := a.Authenticate(bearer(handshake("plain"), tok))
		if err != nil {
			t.Fatalf("%s: plain application: %v", name, err)
		}
		a.Logout(q)
		if _, err := a.Authenticate(bearer(handshake("plain"), tok)); err != nil {
			t.Fatalf("%s: plain application after logout: %v", name, err)
		}
	}
	// Past its expiry (and the skew) the entry is gone.
	a.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	a.revoked.add("x", a.now().Add(time.Minute), a.now())
	if n := a.revoked.len(); n != 1 {
		t.Fatalf("%d entries after expiry, want 1", n)
	}
}

func TestRevokedTableBounded(t *testing.T) {
	r := newRevoked(3)
	now := time.Now()
	for i, d := range []time.Duration{3, 1, 2, 5} {
		r.add(fmt.Sprint(i), now.Add(d*time.Minute), now)
	}
	// Full at 3: the soonest-expiring ("1", in 1m) was forgotten.
	if r.len() != 3 || r.has("1", now) || !r.has("0", now) || !r.has("2", now) || !r.has("3", now) {
		t.Fatalf("table after overflow: %v", r.m)
	}
	if r.has("0", now.Add(4*time.Minute)) {
		t.Fatal("revoked past its expiry")
	}
}
