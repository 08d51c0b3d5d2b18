package auth

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestValidate(t *testing.T) {
	k := testKeys()
	good := func() AppConfig {
		return jwtApp("web", &JWTConfig{Keys: []KeyConfig{{Secret: hsSecret}}})
	}
	for _, tc := range []struct {
		name string
		mod  func(*AppConfig)
		want string
	}{
		{"no name", func(a *AppConfig) { a.Name = "" }, "auth.applications[0].name: required"},
		{"bad name", func(a *AppConfig) { a.Name = "a/b" }, "auth.applications[0].name"},
		{"bad mode", func(a *AppConfig) { a.Mode = "basic" }, "auth.applications[0].mode"},
		{"no origins", func(a *AppConfig) { a.Origins = OriginConfig{} }, "auth.applications[0].origins"},
		{"bad origin", func(a *AppConfig) { a.Origins.Allowed = []string{"app.example.com"} }, "auth.applications[0].origins.allowed"},
		{"mid wildcard", func(a *AppConfig) { a.Origins.Allowed = []string{"https://a.*.example.com"} }, "origins.allowed"},
		{"tld wildcard", func(a *AppConfig) { a.Origins.Allowed = []string{"https://*.com"} }, "origins.allowed"},
		{"bad template", func(a *AppConfig) { a.SIPIdentity.Template = "sip:{user}@x\r\nVia: y" }, "sip_identity"},
		{"no issuer", func(a *AppConfig) { a.JWT.Issuer = "" }, "auth.applications[0].jwt.issuer: required"},
		{"no audience", func(a *AppConfig) { a.JWT.Audience = []string{} }, "jwt.audience"},
		{"huge skew", func(a *AppConfig) { a.JWT.ClockSkew = time.Hour }, "jwt.clock_skew"},
		{"bad source", func(a *AppConfig) { a.JWT.TokenSources = []string{"header", "body"} }, "jwt.token_sources[1]"},
		{"cookie without name", func(a *AppConfig) { a.JWT.TokenSources = []string{"cookie"} }, "jwt.cookie"},
		{"no keys", func(a *AppConfig) { a.JWT.Keys = nil }, "needs keys or jwks"},
		{"short secret", func(a *AppConfig) { a.JWT.Keys = []KeyConfig{{Secret: "short"}} }, "jwt.keys[0]: secret: must be at least 32 bytes"},
		{"two sources", func(a *AppConfig) { a.JWT.Keys = []KeyConfig{{Secret: hsSecret, PublicKey: "x"}} }, "jwt.keys[0]: exactly one"},
		{"missing file", func(a *AppConfig) { a.JWT.Keys = []KeyConfig{{PublicKeyFile: "/nonexistent/key.pem"}} }, "jwt.keys[0]: public_key_file"},
		{"private key", func(a *AppConfig) {
			a.JWT.Keys = []KeyConfig{{PublicKey: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}}
		}, "private key"},
		{"alg mismatch", func(a *AppConfig) {
			a.JWT.Keys = []KeyConfig{{Algorithm: "ES256", PublicKey: pemPublic(t, &k.rsa.PublicKey)}}
		}, "jwt.keys[0]: alg ES256 does not fit"},
		{"alg none", func(a *AppConfig) { a.JWT.Keys = []KeyConfig{{Algorithm: "none", Secret: hsSecret}} }, "jwt.keys[0]: alg"},
		{"http jwks", func(a *AppConfig) { a.JWT.JWKS = &JWKSConfig{URL: "http://idp.example.com/jwks"} }, "jwt.jwks.url"},
		{"jwks min_refresh", func(a *AppConfig) { a.JWT.JWKS = &JWKSConfig{URL: "https://idp/jwks", MinRefresh: 2 * time.Hour} }, "jwt.jwks.min_refresh"},
		{"jwt without config", func(a *AppConfig) { a.JWT = nil }, "auth.applications[0].jwt: required"},
		{"guest without targets", func(a *AppConfig) {
			a.Mode, a.JWT, a.Guest = ModeGuest, nil, &GuestConfig{Domain: "guest.example.com"}
		}, "guest.allowed_targets: required"},
		{"guest bad target", func(a *AppConfig) {
			a.Mode, a.JWT, a.Guest = ModeGuest, nil, &GuestConfig{Domain: "guest.example.com", AllowedTargets: []string{"a b@c"}}
		}, "guest.allowed_targets[0]"},
		{"guest bad domain", func(a *AppConfig) {
			a.Mode, a.JWT, a.Guest = ModeGuest, nil, &GuestConfig{Domain: "-x", AllowedTargets: []string{"a@b"}}
		}, "guest.domain"},
		{"guest negative idle resume", func(a *AppConfig) {
			a.Mode, a.JWT, a.Guest = ModeGuest, nil, &GuestConfig{Domain: "g.example.com", AllowedTargets: []string{"a@b"}, IdleResumeTimeout: -time.Second}
		}, "guest.idle_resume_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := good()
			tc.mod(&app)
			err := Config{Applications: []AppConfig{app}}.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), hsSecret) {
				t.Fatal("the error shows the secret")
			}
		})
	}
	if err := (Config{Applications: []AppConfig{good(), good()}}).Validate(); err == nil || !strings.Contains(err.Error(), "auth.applications[1].name") {
		t.Errorf("duplicate application: %v", err)
	}
	if err := (Config{}).Validate(); err == nil {
		t.Error("no applications accepted")
	}
	if err := (Config{Applications: []AppConfig{good()}}).Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
}

// exampleYAML is the auth example of docs/security.md (with inline keys
// for the files); keep them in step.
const exampleYAML = `
applications:
  - name: web
    mode: jwt
    origins:
      allowed: ["https://app.example.com", "https://*.example.com"]
    limits: default
    sip_identity:
      template: "sip:{user}@{domain}"
      default_domain: example.com
    jwt:
      issuer: https://idp.example.com/
      audience: [jsonrtc]
      clock_skew: 30s
      identity_claim: email
      token_sources: [header, query, cookie]
      cookie: jsonrtc_token
      keys:
        - kid: hs1
          secret: "0123456789abcdef0123456789abcdef-test-secret"
      jwks:
        url: https://idp.example.com/.well-known/jwks.json
        refresh: 1h
        min_refresh: 1m
        timeout: 5s
      max_lifetime: 1h
      revoke_on_logout: true
  - name: native
    mode: jwt
    origins:
      allow_missing: true
    jwt:
      issuer: https://idp.example.com/
      audience: [jsonrtc-native]
      keys:
        - secret: "0123456789abcdef0123456789abcdef-test-secret"
  - name: support
    mode: guest
    origins:
      allowed: ["https://www.example.com"]
    limits: click-to-call
    guest:
      domain: guest.example.com
      allowed_targets: ["sales@example.com", "*@support.example.com", "tel:+1800*"]
      idle_resume_timeout: 5s
      sessions_per_address: 5
  - name: dev
    mode: open
    disabled: true
    origins:
      allowed: ["http://localhost:8080"]
    sip_identity:
      default_domain: dev.example.com
`

func TestExampleYAML(t *testing.T) {
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(exampleYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), hsSecret) {
		t.Error("marshalled config shows the secret")
	}
}
