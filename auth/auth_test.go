package auth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestValidTokens(t *testing.T) {
	k := testKeys()
	a := newAuth(t, jwtApp("web", &JWTConfig{Keys: []KeyConfig{
		{ID: "hs", Secret: hsSecret},
		{ID: "rsa", PublicKeyFile: writeFile(t, "rsa.pem", pemPublic(t, &k.rsa.PublicKey))},
		{ID: "ec", PublicKey: pemPublic(t, &k.ec.PublicKey)},
		{PublicKeyFile: writeFile(t, "ed.pem", pemPublic(t, k.ed.Public()))}, // no kid
	}}))
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{"HS256", jwt.SigningMethodHS256, []byte(hsSecret), "hs"},
		{"RS256", jwt.SigningMethodRS256, k.rsa, "rsa"},
		{"ES256", jwt.SigningMethodES256, k.ec, "ec"},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed, ""},
		{"EdDSA with a kid", jwt.SigningMethodEdDSA, k.ed, "whatever"},
		{"HS256 without kid", jwt.SigningMethodHS256, []byte(hsSecret), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := sign(t, tc.method, tc.key, tc.kid, claims("alice@Example.COM"))
			p, err := a.Authenticate(bearer(handshake("web"), tok))
			if err != nil {
				t.Fatal(err)
			}
			if p.Application != "web" || p.Identity != "alice@example.com" || p.SIPIdentity != "sip:alice@example.com" ||
				p.Guest || p.Mode != ModeJWT || p.Expires.IsZero() {
				t.Fatalf("principal = %+v", p)
			}
		})
	}
}

func TestRefusedTokens(t *testing.T) {
	k := testKeys()
	rsaPEM := pemPublic(t, &k.rsa.PublicKey)
	a := newAuth(t, jwtApp("web", &JWTConfig{Keys: []KeyConfig{
		{ID: "hs", Secret: hsSecret},
		{ID: "rsa", PublicKey: rsaPEM},
		{ID: "ec", PublicKey: pemPublic(t, &k.ec.PublicKey)},
	}}))
	now := time.Now()
	with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := claims("alice@example.com")
		mod(c)
		return c
	}
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims("alice@example.com")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  string
		want error
	}{
		{"expired", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), ErrTokenExpired},
		{"no exp", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { delete(c, "exp") })), ErrInvalidToken},
		{"not yet valid", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), ErrTokenNotYetValid},
		{"issued in the future", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), ErrTokenNotYetValid},
		{"wrong audience", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { c["aud"] = "other" })), ErrWrongAudience},
		{"no audience", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { delete(c, "aud") })), ErrInvalidToken},
		{"wrong issuer", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" })), ErrWrongIssuer},
		{"wrong RSA key", sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa", claims("alice@example.com")), ErrInvalidToken},
		{"wrong RSA key, no kid", sign(t, jwt.SigningMethodRS256, k.rsa2, "", claims("alice@example.com")), ErrInvalidToken},
		{"wrong EC key", sign(t, jwt.SigningMethodES256, k.ec2, "ec", claims("alice@example.com")), ErrInvalidToken},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "hs", claims("alice@example.com")), ErrInvalidToken},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, k.rsa, "nope", claims("alice@example.com")), ErrInvalidToken},
		{"kid of another algorithm", sign(t, jwt.SigningMethodRS256, k.rsa, "ec", claims("alice@example.com")), ErrInvalidToken},
		{"alg none", noneTok, ErrInvalidToken},
		// The classic confusion: HMAC keyed with the server's RSA public key.
		{"HS256 keyed with the RSA public key", sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), "rsa", claims("alice@example.com")), ErrInvalidToken},
		{"HS256 keyed with the RSA public key, no kid", sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), "", claims("alice@example.com")), ErrInvalidToken},
		{"RS384 (not allowed)", sign(t, jwt.SigningMethodRS384, k.rsa, "rsa", claims("alice@example.com")), ErrInvalidToken},
		{"garbage", "not.a.token", ErrInvalidToken},
		{"too long", strings.Repeat("a", maxTokenLen+1), ErrInvalidToken},
		{"no identity claim", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { delete(c, "sub") })), ErrInvalidIdentity},
		{"identity not a string", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", with(func(c jwt.MapClaims) { c["sub"] = 42 })), ErrInvalidIdentity},
		{"header injection in identity", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims("alice@example.com\r\nVia: evil")), ErrInvalidIdentity},
		{"identity with URI params", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims("alice;transport=tcp@example.com")), ErrInvalidIdentity},
		{"identity with angle brackets", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims("<sip:alice@example.com>")), ErrInvalidIdentity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authenticate(bearer(handshake("web"), tc.tok))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if Status(err) != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", Status(err))
			}
			w := httptest.NewRecorder()
			WriteError(w, err)
			body, _ := io.ReadAll(w.Body)
			if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("response %d %q", w.Code, w.Header())
			}
			if len(tc.tok) > 20 && (strings.Contains(string(body), tc.tok[:20]) || strings.Contains(err.Error(), tc.tok[:20])) {
				t.Fatal("the token leaked into the error")
			}
			if strings.Contains(string(body), "alice") || strings.Contains(string(body), "audience") || strings.Contains(string(body), "issuer") {
				t.Fatalf("body says too much: %q", body)
			}
		})
	}
}

func TestClockSkew(t *testing.T) {
	k := testKeys()
	a := newAuth(t, jwtApp("web", &JWTConfig{Keys: []KeyConfig{{PublicKey: pemPublic(t, &k.ec.PublicKey)}}}))
	now := time.Now()
	base := time.Unix(now.Unix(), 0)
	a.now = func() time.Time { return base }
	c := claims("alice@example.com")
	c["exp"] = base.Add(-20 * time.Second).Unix() // within the default 30s
	c["nbf"] = base.Add(20 * time.Second).Unix()
	c["iat"] = base.Unix()
	if _, err := a.Authenticate(bearer(handshake("web"), sign(t, jwt.SigningMethodES256, k.ec, "", c))); err != nil {
		t.Fatalf("token within the skew refused: %v", err)
	}
	c["exp"] = base.Add(-40 * time.Second).Unix()
	if _, err := a.Authenticate(bearer(handshake("web"), sign(t, jwt.SigningMethodES256, k.ec, "", c))); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("token beyond the skew: err = %v", err)
	}
}

func TestTokenSources(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, []byte(hsSecret), "", claims("alice@example.com"))
	all := newAuth(t, jwtApp("web", &JWTConfig{
		Keys:         []KeyConfig{{Secret: hsSecret}},
		TokenSources: []string{"header", "query", "cookie"},
		Cookie:       "jsonrtc_token",
	}))
	headerOnly := newAuth(t, jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}, TokenSources: []string{"header"}}))

	fromQuery := func() *http.Request {
		r := handshake("web")
		r.URL.RawQuery = url.Values{"access_token": {tok}}.Encode()
		return r
	}
	fromCookie := func() *http.Request {
		r := handshake("web")
		r.AddCookie(&http.Cookie{Name: "jsonrtc_token", Value: tok})
		return r
	}
	for name, r := range map[string]*http.Request{
		"header": bearer(handshake("web"), tok),
		"query":  fromQuery(),
		"cookie": fromCookie(),
	} {
		if p, err := all.Authenticate(r); err != nil || p.Identity != "alice@example.com" {
			t.Errorf("token from %s: %v, %+v", name, err, p)
		}
	}
	if _, err := headerOnly.Authenticate(fromQuery()); !errors.Is(err, ErrNoToken) {
		t.Errorf("query token with sources [header]: err = %v, want ErrNoToken", err)
	}
	if _, err := headerOnly.Authenticate(fromCookie()); !errors.Is(err, ErrNoToken) {
		t.Errorf("cookie token with sources [header]: err = %v, want ErrNoToken", err)
	}
	// A Basic header (for a proxy, say) is not a token; the query is used.
	r := fromQuery()
	r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	if _, err := all.Authenticate(r); err != nil {
		t.Errorf("Basic header plus query token: %v", err)
	}
	// Two tokens in one source are ambiguous.
	r = handshake("web")
	r.URL.RawQuery = url.Values{"access_token": {tok, tok}}.Encode()
	if _, err := all.Authenticate(r); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("two access_token parameters: err = %v", err)
	}
	w := httptest.NewRecorder()
	_, err := all.Authenticate(handshake("web"))
	WriteError(w, err)
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="jsonrtc"` || !errors.Is(err, ErrNoToken) {
		t.Errorf("no token: %d %q %v", w.Code, w.Header().Get("WWW-Authenticate"), err)
	}
}

func TestIdentityClaimAndTemplate(t *testing.T) {
	app := jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}, IdentityClaim: "email"})
	app.SIPIdentity = SIPIdentityConfig{Template: "sips:{user}@sip.example.org;user=phone-not", DefaultDomain: "example.org"}
	app.Limits = "gold"
	a := newAuth(t, app)
	c := claims("ignored")
	c["email"] = "bob@example.org"
	p, err := a.Authenticate(bearer(handshake("web"), sign(t, jwt.SigningMethodHS256, []byte(hsSecret), "", c)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity != "bob@example.org" || p.SIPIdentity != "sips:bob@sip.example.org;user=phone-not" || p.Limits != "gold" {
		t.Fatalf("principal = %+v", p)
	}
	// A bare user name takes the default domain in its SIP identity.
	c["email"] = "carol"
	p, err = a.Authenticate(bearer(handshake("web"), sign(t, jwt.SigningMethodHS256, []byte(hsSecret), "", c)))
	if err != nil || p.Identity != "carol" || p.SIPIdentity != "sips:carol@sip.example.org;user=phone-not" {
		t.Fatalf("bare user: %v %+v", err, p)
	}
}

func TestOrigins(t *testing.T) {
	app := AppConfig{Name: "web", Mode: ModeOpen, Origins: OriginConfig{Allowed: []string{
		"https://app.example.com", "https://*.example.net", "http://localhost:8080",
	}}}
	native := app
	native.Name = "native"
	native.Origins.AllowMissing = true
	a := newAuth(t, app, native)
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true},
		{"https://APP.example.com:443", true},
		{"https://a.example.net", true},
		{"https://a.b.example.net", true},
		{"http://localhost:8080", true},
		{"https://example.net", false}, // the pattern is subdomains only
		{"https://evil.com", false},
		{"https://app.example.com.evil.com", false},
		{"https://evilexample.net", false},
		{"http://app.example.com", false},       // scheme
		{"https://app.example.com:8443", false}, // port
		{"http://localhost", false},
		{"null", false},
		{"https://app.example.com/path", false},
		{"", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/ws/web", nil)
		r.Header.Set("Origin", tc.origin)
		_, err := a.Authenticate(r)
		if tc.ok != (err == nil) {
			t.Errorf("origin %q: err = %v", tc.origin, err)
		}
		if !tc.ok && (!errors.Is(err, ErrForbiddenOrigin) || Status(err) != 403) {
			t.Errorf("origin %q: err = %v, want 403 forbidden origin", tc.origin, err)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/ws/web", nil)
	if _, err := a.Authenticate(r); !errors.Is(err, ErrForbiddenOrigin) {
		t.Errorf("missing origin: err = %v", err)
	}
	if err := a.CheckOrigin("web", r); !errors.Is(err, ErrForbiddenOrigin) {
		t.Errorf("CheckOrigin, missing origin: err = %v", err)
	}
	r = httptest.NewRequest(http.MethodGet, "/ws/native", nil)
	if _, err := a.Authenticate(r); err != nil {
		t.Errorf("missing origin with allow_missing: %v", err)
	}
	r.Header.Set("Origin", "https://evil.com")
	if _, err := a.Authenticate(r); !errors.Is(err, ErrForbiddenOrigin) {
		t.Errorf("foreign origin with allow_missing: err = %v", err)
	}
}

func TestApplications(t *testing.T) {
	off := AppConfig{Name: "off", Mode: ModeOpen, Disabled: true, Origins: OriginConfig{AllowMissing: true}}
	on := AppConfig{Name: "on", Mode: ModeOpen, Origins: OriginConfig{AllowMissing: true}}
	a := newAuth(t, off, on)
	for path, want := range map[string]int{
		"/ws/webrtc/on": 0, "/ws/on": 0,
		"/ws/webrtc/off": 403, "/ws/off": 403,
		"/ws/webrtc/nope": 404, "/ws/nope": 404, "/ws/": 404, "/ws/webrtc/": 404,
		"/ws/webrtc/on/x": 404, "/other/on": 404,
	} {
		_, err := a.Authenticate(httptest.NewRequest(http.MethodGet, path, nil))
		if got := map[bool]int{true: 0, false: Status(err)}[err == nil]; got != want {
			t.Errorf("%s: status %d (%v), want %d", path, got, err, want)
		}
	}
	w := httptest.NewRecorder()
	WriteError(w, errors.New("boom: secret detail"))
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret") {
		t.Errorf("foreign error: %d %q", w.Code, w.Body.String())
	}
}

func TestGuests(t *testing.T) {
	a := newAuth(t, AppConfig{
		Name: "c2c", Mode: ModeGuest, Limits: "click-to-call",
		Origins: OriginConfig{Allowed: []string{testOrigin}},
		Guest: &GuestConfig{Domain: "Guest.Example.com", AllowedTargets: []string{
			"sales@example.com", "sip:*@support.example.com", "tel:+1800*",
		}},
	})
	seen := map[string]bool{}
	var p *Principal
	for range 1000 {
		var err error
		p, err = a.Authenticate(handshake("c2c"))
		if err != nil {
			t.Fatal(err)
		}
		if !p.Guest || !strings.HasPrefix(p.Identity, "guest-") || !strings.HasSuffix(p.Identity, "@guest.example.com") ||
			p.SIPIdentity != "sip:"+p.Identity || p.Limits != "click-to-call" {
			t.Fatalf("guest principal = %+v", p)
		}
		if seen[p.Identity] {
			t.Fatalf("guest identity %s issued twice", p.Identity)
		}
		seen[p.Identity] = true
	}
	for target, want := range map[string]bool{
		"sales@example.com":                        true,
		"sip:sales@example.com":                    true,
		"SIP:sales@EXAMPLE.com":                    true,
		"alice@support.example.com":                true,
		"sips:bob@support.example.com":             true,
		"tel:+18005550100":                         true,
		"tel:+19005550100":                         false,
		"tel:+1800":                                true,
		"Sales@example.com":                        false, // user parts are case-sensitive
		"ceo@example.com":                          false,
		"sales@example.com.evil.com":               false,
		"sales@example.com@evil.com":               false,
		"a@b@support.example.com":                  false,
		"sales@example.com;transport=tcp":          false,
		"sales@example.com\r\nRoute: <sip:x>":      false,
		"alice@x.support.example.com":              false, // the domain is exact
		"+19005550100@gateway.example.com":         false,
		"":                                         false,
		"sip:" + strings.Repeat("a", 300) + "@x.y": false,
	} {
		if got := AllowedTarget(p, target); got != want {
			t.Errorf("AllowedTarget(guest, %q) = %v, want %v", target, got, want)
		}
	}
	if err := CheckInitiator(p, "someone@example.com"); !errors.Is(err, ErrInitiatorMismatch) {
		t.Errorf("guest claiming another identity: err = %v", err)
	}
	if err := CheckInitiator(p, p.Identity); err != nil {
		t.Errorf("guest's own identity: %v", err)
	}
}

func TestInitiatorAndBind(t *testing.T) {
	a := newAuth(t,
		jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}}),
		AppConfig{Name: "dev", Mode: ModeOpen, Origins: OriginConfig{AllowMissing: true},
			SIPIdentity: SIPIdentityConfig{DefaultDomain: "dev.example.com"}},
	)
	p, err := a.Authenticate(bearer(handshake("web"), sign(t, jwt.SigningMethodHS256, []byte(hsSecret), "", claims("alice@example.com"))))
	if err != nil {
		t.Fatal(err)
	}
	if !AllowedTarget(p, "anyone@anywhere.example") {
		t.Error("a non-guest is restricted")
	}
	for init, ok := range map[string]bool{
		"": true, "alice@example.com": true, "sip:alice@example.com": true, "alice@EXAMPLE.COM": true,
		"bob@example.com": false, "Alice@example.com": false, "alice": false, "alice@example.com\r\n": false,
		"tel:+15551234567": false,
	} {
		err := CheckInitiator(p, init)
		if ok != (err == nil) {
			t.Errorf("CheckInitiator(alice, %q) = %v", init, err)
		}
		if err != nil && (Status(err) != 403 || !errors.Is(err, ErrInitiatorMismatch)) {
			t.Errorf("CheckInitiator(alice, %q): status %d", init, Status(err))
		}
	}
	if q, err := Bind(p, "alice@example.com"); err != nil || q != p {
		t.Errorf("Bind(jwt principal, own identity) = %v, %v", q, err)
	}
	if _, err := Bind(p, "bob@example.com"); Status(err) != 403 {
		t.Errorf("Bind(jwt principal, other) = %v", err)
	}

	open, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/ws/dev", nil))
	if err != nil || open.Identity != "" || open.Mode != ModeOpen {
		t.Fatalf("open principal = %+v, %v", open, err)
	}
	if _, err := Bind(open, ""); !errors.Is(err, ErrInvalidIdentity) {
		t.Errorf("Bind(open, \"\"): err = %v", err)
	}
	if _, err := Bind(open, "x\r\ny"); err == nil {
		t.Error("Bind(open, CRLF) accepted")
	}
	bound, err := Bind(open, "sip:dave")
	if err != nil || bound.Identity != "dave" || bound.SIPIdentity != "sip:dave@dev.example.com" {
		t.Fatalf("Bind(open, sip:dave) = %+v, %v", bound, err)
	}
	if open.Identity != "" {
		t.Error("Bind changed its argument")
	}
	if err := CheckInitiator(bound, "eve"); Status(err) != 403 {
		t.Errorf("bound open principal accepts another initiator: %v", err)
	}
	if err := CheckInitiator(bound, "sip:dave@dev.example.com"); err != nil {
		t.Errorf("bound open principal refuses its SIP identity: %v", err)
	}
}
