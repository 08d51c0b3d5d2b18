package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://idp.example.com/"
	testAudience = "jsonrtc"
	testOrigin   = "https://app.example.com"
	hsSecret     = "0123456789abcdef0123456789abcdef-test-secret"
)

// Keys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() struct {
	rsa, rsa2 *rsa.PrivateKey
	ec, ec2   *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
} {
	var k struct {
		rsa, rsa2 *rsa.PrivateKey
		ec, ec2   *ecdsa.PrivateKey
		ed        ed25519.PrivateKey
	}
	k.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.rsa2, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.ec2, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, k.ed, _ = ed25519.GenerateKey(rand.Reader)
	return k
})

func pemPublic(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func writeFile(t testing.TB, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// claims returns valid claims for identity, to be adjusted by a test.
func claims(identity string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":   testIssuer,
		"aud":   testAudience,
		"sub":   identity,
		"email": identity,
		"iat":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	}
}

func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtApp(name string, j *JWTConfig) AppConfig {
	if j.Issuer == "" {
		j.Issuer = testIssuer
	}
	if j.Audience == nil {
		j.Audience = []string{testAudience}
	}
	return AppConfig{
		Name:        name,
		Mode:        ModeJWT,
		Origins:     OriginConfig{Allowed: []string{testOrigin, "https://*.example.net"}},
		SIPIdentity: SIPIdentityConfig{DefaultDomain: "example.com"},
		JWT:         j,
	}
}

func newAuth(t testing.TB, apps ...AppConfig) *Authenticator {
	t.Helper()
	a, err := New(Config{Applications: apps}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// handshake builds a handshake request for app from the test origin.
func handshake(app string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/ws/webrtc/"+app, nil)
	r.Header.Set("Origin", testOrigin)
	return r
}

func bearer(r *http.Request, tok string) *http.Request {
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// jwk encodes a public key as a JWK.
func jwk(kid string, pub any) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, _ := p.Bytes()
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(p)}
	}
	panic("unsupported key")
}
