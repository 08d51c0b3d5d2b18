package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Options tune an Authenticator; nil means defaults.
type Options struct {
	// Logger receives JWKS refreshes and failures. Default: discard.
	Logger *slog.Logger
	// HTTPClient fetches JWKS URLs. Default: a client that follows no
	// redirects (a key set must come from the configured URL) with the
	// JWKS timeout.
	HTTPClient *http.Client
}

// Authenticator authenticates WebSocket handshakes. It is safe for
// concurrent use and starts no goroutine.
type Authenticator struct {
	apps    map[string]*application
	now     func() time.Time
	revoked *revoked // tokens of sessions that logged out: revoke.go
}

// application is an AppConfig compiled.
type application struct {
	name               string
	mode               Mode
	disabled           bool
	limits             string
	origins            []originRule
	allowMissingOrigin bool
	sip                sipTemplate
	jwt                *jwtVerifier
	guestDomain        string
	guestKey           []byte
	guestTTL           time.Duration
	targets            []string // normalised allowed_targets
	guestPolicy        GuestPolicy
}

// Principal is who a connection runs as.
type Principal struct {
	Application string
	// Identity is the authenticated identity ("alice@example.com" or a
	// bare user name), a generated guest identity, or for an open
	// application "" until [Bind] sets it from the connect's initiator.
	Identity string
	// SIPIdentity is Identity mapped by the application's sip_identity
	// template ("" while Identity is).
	SIPIdentity string
	Guest       bool
	Mode        Mode
	// Limits is the application's limits profile ("" = default).
	Limits string
	// AllowedTargets are a guest's allowed target patterns (nil for
	// everyone else: unrestricted).
	AllowedTargets []string
	// GuestPolicy is a guest's application's session policy (zero for
	// everyone else).
	GuestPolicy GuestPolicy
	// Expires is the token's expiry (zero when there is none). The
	// session may outlive it: the token is checked at the handshake.
	Expires time.Time
	// SetCookie, for a new guest, is the cookie that gives it back this
	// identity when it reconnects; the gateway sets it on the handshake
	// response.
	SetCookie *http.Cookie

	app *application
	// tokenKey names the token in the revocation table (revoke.go).
	tokenKey string
}

// New compiles cfg (validating it and loading key files) into an
// Authenticator.
func New(cfg Config, opts *Options) (*Authenticator, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	apps, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{apps: apps, now: time.Now, revoked: newRevoked(cfg.MaxRevokedTokens)}
	for _, app := range apps {
		if app.jwt == nil || app.jwt.jwksConfig == nil {
			continue
		}
		client := o.HTTPClient
		if client == nil {
			client = &http.Client{
				Timeout: app.jwt.jwksConfig.Timeout,
				CheckRedirect: func(*http.Request, []*http.Request) error {
					return http.ErrUseLastResponse
				},
			}
		}
		app.jwt.jwks = &jwksCache{cfg: *app.jwt.jwksConfig, client: client, now: func() time.Time { return a.now() },
			log: o.Logger.With("application", app.name)}
	}
	return a, nil
}

// AppFromPath returns the application named by a handshake path,
// /ws/webrtc/<app> or /ws/<app>.
func AppFromPath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/ws/")
	if !ok {
		return "", false
	}
	if app, ok := strings.CutPrefix(rest, "webrtc/"); ok {
		rest = app
	}
	if rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

// Authenticate authenticates a WebSocket handshake for the application
// its path names (see [AppFromPath]): it checks the application, the
// Origin, and the credentials its mode requires. Call it before the
// upgrade; on error answer with [WriteError]. The error is an *Error:
// 404 unknown application, 403 disabled application or forbidden origin,
// 401 missing or invalid token.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	name, ok := AppFromPath(r.URL.Path)
	if !ok {
		return nil, newError(ErrUnknownApplication, errors.New("path names no application"))
	}
	return a.AuthenticateApp(r, name)
}

// AuthenticateApp is Authenticate for an application named otherwise than
// by the path (the long-poll transport, say).
func (a *Authenticator) AuthenticateApp(r *http.Request, name string) (*Principal, error) {
	app := a.apps[name]
	if app == nil {
		return nil, newError(ErrUnknownApplication, nil)
	}
	if app.disabled {
		return nil, newError(ErrForbiddenApplication, nil)
	}
	if err := app.checkOrigin(r.Header.Values("Origin")); err != nil {
		return nil, err
	}
	p := &Principal{Application: app.name, Mode: app.mode, Limits: app.limits, app: app}
	switch app.mode {
	case ModeJWT:
		t, err := app.jwt.verify(r.Context(), r, a.now)
		if err != nil {
			return nil, err
		}
		if app.jwt.revokeOnLogout {
			p.tokenKey = tokenKey(app.name, t.jti, t.raw)
			if a.revoked.has(p.tokenKey, a.now()) {
				return nil, newError(ErrTokenRevoked, errors.New("its session logged out"))
			}
		}
		if err := p.setIdentity(t.identity); err != nil {
			return nil, err
		}
		p.Expires = t.exp
	case ModeGuest:
		id, ok := app.guestFromCookie(r, a.now())
		if !ok {
			// 26 characters of base32: 130 random bits.
			id = "guest-" + strings.ToLower(rand.Text()) + "@" + app.guestDomain
			p.SetCookie = app.guestCookie(id, a.now(), r.TLS != nil)
		}
		if err := p.setIdentity(id); err != nil {
			return nil, err
		}
		p.Guest = true
		p.AllowedTargets = append([]string(nil), app.targets...)
		p.GuestPolicy = app.guestPolicy
	case ModeOpen:
	}
	return p, nil
}

// CheckOrigin applies the Origin rules of application name to r; nil when
// allowed. Authenticate already does this; it is here for handshakes that
// authenticate otherwise.
func (a *Authenticator) CheckOrigin(name string, r *http.Request) error {
	app := a.apps[name]
	if app == nil {
		return newError(ErrUnknownApplication, nil)
	}
	return app.checkOrigin(r.Header.Values("Origin"))
}

func (p *Principal) setIdentity(raw string) error {
	id, ok := parseIdentity(raw)
	if !ok {
		return newError(ErrInvalidIdentity, errors.New("identity has characters or a length that are not allowed"))
	}
	sipID, err := p.app.sip.apply(id)
	if err != nil {
		return newError(ErrInvalidIdentity, err)
	}
	p.Identity, p.SIPIdentity = id, sipID
	return nil
}

// CheckInitiator applies the connect rule of docs/protocol.md §4.3: an
// initiator supplied by the client that contradicts the authenticated
// identity is refused with 403. An empty initiator contradicts nothing.
// The initiator may be the identity or its SIP identity, with or without
// a sip: scheme; domains compare case-insensitively. For an open
// application's principal that [Bind] has not bound yet, any well-formed
// initiator passes.
func CheckInitiator(p *Principal, initiator string) error {
	if initiator == "" {
		return nil
	}
	id, ok := parseIdentity(initiator)
	if !ok {
		return newError(ErrInitiatorMismatch, errors.New("initiator is not a valid identity"))
	}
	if p.Identity == "" && p.Mode == ModeOpen {
		return nil
	}
	if id == p.Identity {
		return nil
	}
	if sipID, ok := parseIdentity(p.SIPIdentity); ok && id == sipID {
		return nil
	}
	return newError(ErrInitiatorMismatch, nil)
}

// Bind returns the principal a session runs as, given the initiator of
// its connect request. For an open application whose principal has no
// identity yet, that is the initiator (which must be well-formed and
// non-empty: 401 otherwise); for every other principal it is p itself,
// after [CheckInitiator]. The gateway puts the result's Identity in the
// connect response's initiator.
func Bind(p *Principal, initiator string) (*Principal, error) {
	if p.Mode != ModeOpen || p.Identity != "" {
		if err := CheckInitiator(p, initiator); err != nil {
			return nil, err
		}
		return p, nil
	}
	if initiator == "" {
		return nil, newError(ErrInvalidIdentity, errors.New("open application: connect names no initiator"))
	}
	q := *p
	if err := q.setIdentity(initiator); err != nil {
		return nil, err
	}
	return &q, nil
}

// AllowedTarget reports whether p may call, message or subscribe to
// target. Guests may reach only their application's allowed targets;
// everyone else may reach any target.
func AllowedTarget(p *Principal, target string) bool {
	if !p.Guest {
		return true
	}
	t, ok := normalizeAddress(target, false)
	if !ok {
		return false
	}
	for _, pat := range p.AllowedTargets {
		if globMatch(pat, t) {
			return true
		}
	}
	return false
}

// jwtVerifier verifies the bearer tokens of one application.
type jwtVerifier struct {
	// maxLifetime, when positive, refuses tokens whose exp - iat is
	// longer, or that have no iat.
	maxLifetime    time.Duration
	revokeOnLogout bool
	issuer         string
	audience       []string
	skew           time.Duration
	claim          string
	sources        []string
	cookie         string
	static         []vkey
	jwksConfig     *JWKSConfig
	jwks           *jwksCache
}

// maxTokenLen bounds what is parsed at all: real tokens are far smaller.
const maxTokenLen = 8 << 10

// token finds the bearer token in r, in the configured order of sources.
func (v *jwtVerifier) token(r *http.Request) (string, error) {
	for _, src := range v.sources {
		var tok string
		switch src {
		case sourceHeader:
			h := r.Header.Values("Authorization")
			if len(h) == 0 {
				continue
			}
			scheme, t, ok := strings.Cut(h[0], " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") {
				continue // another scheme, perhaps for a proxy
			}
			if len(h) > 1 {
				return "", newError(ErrInvalidToken, errors.New("several Authorization headers"))
			}
			tok = strings.TrimSpace(t)
		case sourceQuery:
			vals := r.URL.Query()["access_token"]
			if len(vals) == 0 {
				continue
			}
			if len(vals) > 1 {
				return "", newError(ErrInvalidToken, errors.New("several access_token parameters"))
			}
			tok = vals[0]
		case sourceCookie:
			c, err := r.Cookie(v.cookie)
			if err != nil {
				continue
			}
			tok = c.Value
		}
		if tok == "" {
			return "", newError(ErrNoToken, fmt.Errorf("empty token in %s", src))
		}
		if len(tok) > maxTokenLen {
			return "", newError(ErrInvalidToken, fmt.Errorf("token of %d bytes in %s", len(tok), src))
		}
		return tok, nil
	}
	return "", newError(ErrNoToken, nil)
}

// verified is what a valid token says.
type verified struct {
	identity string
	exp      time.Time
	jti      string // "" when the token has none
	raw      string
}

// verify checks the token of r.
func (v *jwtVerifier) verify(ctx context.Context, r *http.Request, now func() time.Time) (verified, error) {
	raw, err := v.token(r)
	if err != nil {
		return verified{}, err
	}
	return v.verifyToken(ctx, raw, now)
}

func (v *jwtVerifier) verifyToken(ctx context.Context, raw string, now func() time.Time) (verified, error) {
	methods := make([]string, 0, 4)
	for _, alg := range []string{algHS256, algRS256, algES256, algEdDSA} {
		if v.jwks != nil && alg != algHS256 || hasAlg(v.static, alg) {
			methods = append(methods, alg)
		}
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(v.skew),
		jwt.WithTimeFunc(now),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		return v.keysFor(ctx, t)
	})
	if err != nil {
		return verified{}, classify(err)
	}
	id, ok := claims[v.claim].(string)
	if !ok || id == "" {
		return verified{}, newError(ErrInvalidIdentity, fmt.Errorf("claim %q is missing or not a string", v.claim))
	}
	out := verified{identity: id, raw: raw}
	if d, err := claims.GetExpirationTime(); err == nil && d != nil {
		out.exp = d.Time
	}
	if v.maxLifetime > 0 {
		iat, err := claims.GetIssuedAt()
		if err != nil || iat == nil {
			return verified{}, newError(ErrInvalidToken, errors.New("no iat, and jwt.max_lifetime is set"))
		}
		if life := out.exp.Sub(iat.Time); life > v.maxLifetime {
			return verified{}, newError(ErrInvalidToken, fmt.Errorf("lifetime %v exceeds jwt.max_lifetime %v", life, v.maxLifetime))
		}
	}
	if jti, ok := claims["jti"].(string); ok {
		out.jti = jti
	}
	return out, nil
}

func hasAlg(keys []vkey, alg string) bool {
	for _, k := range keys {
		if k.alg == alg {
			return true
		}
	}
	return false
}

var errUnknownKey = errors.New("no key for this token")

// keysFor returns the keys that may have signed t: those of its
// algorithm, and of its kid when it names one. A key is never offered
// for another algorithm than its own.
func (v *jwtVerifier) keysFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	pick := func(keys []vkey) {
		for _, k := range keys {
			if k.alg == alg && (kid == "" || k.kid == "" || k.kid == kid) {
				set.Keys = append(set.Keys, k.key)
			}
		}
	}
	pick(v.static)
	if len(set.Keys) == 0 && v.jwks != nil && alg != algHS256 {
		pick(v.jwks.get(ctx, kid))
	}
	if len(set.Keys) == 0 {
		return nil, errUnknownKey
	}
	return set, nil
}

// classify maps a jwt error to a refusal.
func classify(err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return newError(ErrTokenExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return newError(ErrTokenNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return newError(ErrWrongAudience, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return newError(ErrWrongIssuer, err)
	}
	return newError(ErrInvalidToken, err)
}
