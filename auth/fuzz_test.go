package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzHandshake drives the whole handshake path (application from the
// path, Origin, token sources, JWT parsing and verification, identity
// checks) with arbitrary input. It must never panic, every refusal must be
// an *Error with a handshake status, and the body must not echo the token.
func FuzzHandshake(f *testing.F) {
	k := testKeys()
	f.Add("/ws/webrtc/web", testOrigin, sign(f, jwt.SigningMethodHS256, []byte(hsSecret), "", claims("alice@example.com")), "")
	f.Add("/ws/web", "https://a.example.net", sign(f, jwt.SigningMethodES256, k.ec, "ec", claims("bob")), "c")
	f.Add("/ws/c2c", testOrigin, "", "")
	f.Add("/ws/web", "null", "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJub25lIn0.e30.")
	f.Add("/ws/webrtc/web/", "https://app.example.com:443", "a.b.c", "%zz")
	a := newAuth(f,
		jwtApp("web", &JWTConfig{
			Keys:         []KeyConfig{{Secret: hsSecret}, {ID: "ec", PublicKey: pemPublic(f, &k.ec.PublicKey)}},
			TokenSources: []string{"header", "query", "cookie"}, Cookie: "t",
		}),
		AppConfig{Name: "c2c", Mode: ModeGuest, Origins: OriginConfig{Allowed: []string{testOrigin}},
			Guest: &GuestConfig{Domain: "g.example.com", AllowedTargets: []string{"*@example.com"}}},
	)
	f.Fuzz(func(t *testing.T, path, origin, header, query string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.Path = path
		r.URL.RawQuery = "access_token=" + url.QueryEscape(query)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if header != "" {
			r.Header.Set("Authorization", "Bearer "+header)
			r.Header.Set("Cookie", "t="+header)
		}
		p, err := a.Authenticate(r)
		if err != nil {
			e, ok := errors.AsType[*Error](err)
			if !ok || (e.Status != 401 && e.Status != 403 && e.Status != 404) {
				t.Fatalf("error %v (%T) is not a handshake refusal", err, err)
			}
			for _, tok := range []string{header, query} {
				if len(tok) >= 16 && strings.Contains(e.Body, tok) {
					t.Fatalf("body %q echoes the token", e.Body)
				}
			}
			return
		}
		if strings.ContainsAny(p.Identity+p.SIPIdentity, "\r\n\x00 <>\";") && !strings.HasPrefix(p.SIPIdentity, "sip") {
			t.Fatalf("unsafe identity %q / %q", p.Identity, p.SIPIdentity)
		}
		if strings.ContainsAny(p.Identity, "\r\n\x00 <>\";?%") {
			t.Fatalf("unsafe identity %q", p.Identity)
		}
		_ = AllowedTarget(p, query)
		_ = CheckInitiator(p, header)
	})
}

// FuzzTargets checks the guest target and initiator rules: never a panic,
// and nothing with a character that could break a SIP header is allowed.
func FuzzTargets(f *testing.F) {
	for _, s := range []string{"sales@example.com", "sip:a@support.example.com", "tel:+1800555", "a@b@c", "x\r\ny", "*", "tel:"} {
		f.Add(s)
	}
	app := &application{mode: ModeGuest, sip: sipTemplate{template: defaultTemplate},
		targets: []string{"sales@example.com", "*@support.example.com", "tel:+1800*", "*"}}
	p := &Principal{Guest: true, Identity: "guest-x@g.example.com", SIPIdentity: "sip:guest-x@g.example.com",
		Mode: ModeGuest, AllowedTargets: app.targets, app: app}
	f.Fuzz(func(t *testing.T, target string) {
		if AllowedTarget(p, target) && strings.ContainsAny(target, "\r\n\x00 <>\";,?") {
			t.Fatalf("unsafe target %q allowed", target)
		}
		if CheckInitiator(p, target) == nil && target != "" {
			if id, _ := parseIdentity(target); id != p.Identity {
				t.Fatalf("initiator %q accepted for %s", target, p.Identity)
			}
		}
		if id, ok := parseIdentity(target); ok {
			if again, ok := parseIdentity(id); !ok || again != id {
				t.Fatalf("parseIdentity not idempotent: %q -> %q -> %q", target, id, again)
			}
		}
	})
}

// FuzzParseJWKS feeds arbitrary key set documents to the parser.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""},{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data)
		if err != nil {
			return
		}
		for _, k := range keys {
			if _, err := algFor(k.key); err != nil || k.alg == algHS256 {
				t.Fatalf("parsed an unusable key: %+v", k)
			}
		}
	})
}
