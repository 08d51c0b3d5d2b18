package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Config is the auth section of the gateway's configuration: the
// applications clients connect to.
type Config struct {
	Applications []AppConfig `yaml:"applications"`
	// MaxRevokedTokens bounds the table of tokens revoked by a logout
	// (jwt.revoke_on_logout); when it is full, the entry that expires
	// soonest is forgotten. Default 100000.
	MaxRevokedTokens int `yaml:"max_revoked_tokens"`
}

// Mode is how an application authenticates its clients.
type Mode string

const (
	// ModeJWT: an OAuth 2.0 bearer token (a JWT) names the identity.
	ModeJWT Mode = "jwt"
	// ModeGuest: every connection gets a new identity
	// guest-<random>@<domain>, restricted to the allowed targets
	// (anonymous click-to-call).
	ModeGuest Mode = "guest"
	// ModeOpen: the identity is whatever initiator the client's connect
	// names. For development only: anybody can be anybody.
	ModeOpen Mode = "open"
)

// AppConfig is one application, reached at /ws/webrtc/<name> or
// /ws/<name>.
type AppConfig struct {
	Name string `yaml:"name"`
	Mode Mode   `yaml:"mode"`
	// Disabled applications refuse every handshake with 403.
	Disabled bool         `yaml:"disabled"`
	Origins  OriginConfig `yaml:"origins"`
	// Limits names the limits profile of the application (package
	// limits); "" means "default".
	Limits      string            `yaml:"limits"`
	SIPIdentity SIPIdentityConfig `yaml:"sip_identity"`
	JWT         *JWTConfig        `yaml:"jwt"`
	Guest       *GuestConfig      `yaml:"guest"`
}

// OriginConfig is the Origin allow-list of an application (docs/protocol.md
// §1.1; the defence against cross-site WebSocket hijacking).
type OriginConfig struct {
	// Allowed lists exact origins ("https://app.example.com",
	// "http://localhost:8080") and host patterns whose leftmost label
	// is "*" ("https://*.example.com": any subdomain, not the domain
	// itself). Scheme and port must match; "null" never does.
	Allowed []string `yaml:"allowed"`
	// AllowMissing admits handshakes without an Origin header. Browsers
	// always send one, so this only lets in non-browser clients (native
	// apps, the Go SDK, load tools).
	AllowMissing bool `yaml:"allow_missing"`
}

// SIPIdentityConfig maps an identity to the SIP identity the gateway
// asserts for it.
type SIPIdentityConfig struct {
	// Template is a SIP URI with placeholders {identity} (the whole
	// identity), {user} (before the "@") and {domain} (after it, or
	// DefaultDomain). Default "sip:{user}@{domain}".
	Template string `yaml:"template"`
	// DefaultDomain fills {domain} for identities without one.
	DefaultDomain string `yaml:"default_domain"`
	// Assert names the identity header every request the gateway sends
	// to SIP for the application's sessions carries, with the template's
	// URI: "asserted" (P-Asserted-Identity, RFC 3325: for a network that
	// trusts the gateway), "preferred" (P-Preferred-Identity), or ""
	// (none). A client can never set either header itself.
	Assert string `yaml:"assert"`
	// GuestPrivacy sends guests' requests with an anonymous From and
	// Privacy: id (RFC 3323); an asserted identity still goes, for the
	// trusted network to strip at its edge.
	GuestPrivacy bool `yaml:"guest_privacy"`

	// defaulted: Template is the default, not configured. Only a
	// configured template sets the From of SIP requests (the default
	// one leaves the From that sip.identity_domains makes, as before
	// templates were applied).
	defaulted bool
}

// Values of SIPIdentityConfig.Assert.
const (
	AssertNone      = ""
	AssertAsserted  = "asserted"
	AssertPreferred = "preferred"
)

// JWTConfig verifies bearer tokens.
type JWTConfig struct {
	// Issuer is the required "iss".
	Issuer string `yaml:"issuer"`
	// Audience lists the accepted "aud" values; a token must carry one.
	Audience []string `yaml:"audience"`
	// ClockSkew is the leeway on exp, nbf and iat. Default 30s.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// IdentityClaim names the string claim that holds the identity.
	// Default "sub"; "email" is common.
	IdentityClaim string `yaml:"identity_claim"`
	// TokenSources are where a token is looked for, in order: "header"
	// (Authorization: Bearer), "query" (access_token) and "cookie" (the
	// cookie named Cookie). Default [header, query].
	TokenSources []string `yaml:"token_sources"`
	Cookie       string   `yaml:"cookie"`
	// Keys are static verification keys.
	Keys []KeyConfig `yaml:"keys"`
	// JWKS is a key set fetched from the identity provider.
	JWKS *JWKSConfig `yaml:"jwks"`
	// MaxLifetime, when set, refuses tokens whose exp - iat is longer,
	// and tokens without iat: a leaked long-lived token is refused even
	// though the issuer signed it.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// RevokeOnLogout refuses a token, until it expires, once a session
	// opened with it has logged out (close 1000). A lost socket revokes
	// nothing, so reconnects and resumes with the same token still work;
	// but a logout also stops the other sessions of that token from
	// resuming, so give each session (tab) its own token. Tokens are
	// named by jti, or by their hash when they have none.
	RevokeOnLogout bool `yaml:"revoke_on_logout"`
}

// KeyConfig is one static verification key: an HS256 secret, or an RSA
// (RS256), P-256 (ES256) or Ed25519 (EdDSA) public key in PEM ("PUBLIC
// KEY", "RSA PUBLIC KEY" or "CERTIFICATE"). Exactly one of the four
// sources is set.
type KeyConfig struct {
	// ID matches the token's "kid" header; a key without one matches any
	// token of its algorithm.
	ID string `yaml:"kid"`
	// Algorithm is HS256, RS256, ES256 or EdDSA; default: the one that
	// fits the key. A key verifies tokens of its own algorithm only.
	Algorithm     string `yaml:"alg"`
	Secret        Secret `yaml:"secret"`
	SecretFile    string `yaml:"secret_file"`
	PublicKey     string `yaml:"public_key"`
	PublicKeyFile string `yaml:"public_key_file"`
}

// JWKSConfig is a JSON Web Key Set URL (RFC 7517). Keys are cached,
// refreshed every Refresh and when a token names an unknown kid, but
// never more often than MinRefresh, so a flood of made-up kids costs the
// identity provider at most one request per MinRefresh.
type JWKSConfig struct {
	// URL must be https, except on a loopback host.
	URL        string        `yaml:"url"`
	Refresh    time.Duration `yaml:"refresh"`     // default 1h
	MinRefresh time.Duration `yaml:"min_refresh"` // default 1m
	Timeout    time.Duration `yaml:"timeout"`     // default 5s
}

// GuestConfig configures anonymous guests.
type GuestConfig struct {
	// Domain of the generated identities guest-<random>@<domain>.
	Domain string `yaml:"domain"`
	// AllowedTargets are the only targets guests may call, subscribe to
	// or message: exact addresses ("sales@example.com",
	// "tel:+18005550100") or patterns where "*" matches any run of
	// characters other than "@" ("*@support.example.com",
	// "tel:+1800*"). A "sip:" or "sips:" scheme is ignored on both sides.
	AllowedTargets []string `yaml:"allowed_targets"`
	// CookieSecret signs the cookie that gives a guest back its identity
	// when it reconnects (so that its session can resume after a network
	// blip). Nodes of one cluster share it; with none, a random key is
	// made at start-up and guests resume only on this node.
	CookieSecret Secret `yaml:"cookie_secret"`
	// CookieTTL is how long a guest keeps its identity. Default 12h.
	CookieTTL time.Duration `yaml:"cookie_ttl"`
	// IdleResumeTimeout is how long a guest session that has not yet
	// taken part in a call outlives its socket, instead of
	// session.resume_timeout: such a session has nothing to resume, and
	// a dropped one must not hold a guest slot for long. Default 5s.
	IdleResumeTimeout time.Duration `yaml:"idle_resume_timeout"`
	// SessionsPerAddress bounds the live guest sessions (those waiting
	// for a resume included) of one source address (IPv4 address, IPv6
	// /64), so that a few hosts cannot fill the application's session
	// quota. Default 5; negative: unlimited.
	SessionsPerAddress int `yaml:"sessions_per_address"`
}

// GuestPolicy is what the gateway enforces on the sessions of a guest
// application (GuestConfig with its defaults applied).
type GuestPolicy struct {
	IdleResumeTimeout  time.Duration
	SessionsPerAddress int // negative: unlimited
}

const (
	defaultGuestIdleResume = 5 * time.Second
	defaultGuestPerAddress = 5
)

// Secret is a string that prints as "[redacted]", so that logging a
// config never shows it.
type Secret string

func (Secret) String() string            { return "[redacted]" }
func (Secret) GoString() string          { return `"[redacted]"` }
func (Secret) LogValue() slog.Value      { return slog.StringValue("[redacted]") }
func (Secret) MarshalYAML() (any, error) { return "[redacted]", nil }

const (
	defaultClockSkew     = 30 * time.Second
	defaultIdentityClaim = "sub"
	defaultTemplate      = "sip:{user}@{domain}"
	defaultRefresh       = time.Hour
	defaultMinRefresh    = time.Minute
	defaultTimeout       = 5 * time.Second
	minSecretLen         = 32
)

const (
	sourceHeader = "header"
	sourceQuery  = "query"
	sourceCookie = "cookie"
)

// WithDefaults returns c with every unset field that has a default set
// to it. It does not change c.
func (c Config) WithDefaults() Config {
	apps := make([]AppConfig, len(c.Applications))
	for i, a := range c.Applications {
		if a.SIPIdentity.Template == "" {
			a.SIPIdentity.Template = defaultTemplate
			a.SIPIdentity.defaulted = true
		}
		if a.JWT != nil {
			j := *a.JWT
			if j.ClockSkew == 0 {
				j.ClockSkew = defaultClockSkew
			}
			if j.IdentityClaim == "" {
				j.IdentityClaim = defaultIdentityClaim
			}
			if len(j.TokenSources) == 0 {
				j.TokenSources = []string{sourceHeader, sourceQuery}
			}
			if j.JWKS != nil {
				k := *j.JWKS
				if k.Refresh == 0 {
					k.Refresh = defaultRefresh
				}
				if k.MinRefresh == 0 {
					k.MinRefresh = defaultMinRefresh
				}
				if k.Timeout == 0 {
					k.Timeout = defaultTimeout
				}
				j.JWKS = &k
			}
			a.JWT = &j
		}
		apps[i] = a
	}
	c.Applications = apps
	if c.MaxRevokedTokens == 0 {
		c.MaxRevokedTokens = defaultMaxRevoked
	}
	return c
}

var appNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports every invalid setting of c (with defaults applied),
// each naming its key, e.g. "auth.applications[1].jwt.issuer: required".
// It reads and parses the key files, so it also serves a check-only run.
func (c Config) Validate() error {
	_, err := compile(c.WithDefaults())
	return err
}

// compile checks the config and builds the per-application state. Every
// error is collected, so that a config check reports all of them.
func compile(c Config) (map[string]*application, error) {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	apps := make(map[string]*application, len(c.Applications))
	if len(c.Applications) == 0 {
		bad("auth.applications", "at least one application is required")
	}
	if c.MaxRevokedTokens < 1 {
		bad("auth.max_revoked_tokens", "must be positive")
	}
	for i, ac := range c.Applications {
		key := fmt.Sprintf("auth.applications[%d]", i)
		app := &application{name: ac.Name, mode: ac.Mode, disabled: ac.Disabled, limits: ac.Limits}
		switch {
		case ac.Name == "":
			bad(key+".name", "required")
		case !appNameRE.MatchString(ac.Name):
			bad(key+".name", "%q: must match %s", ac.Name, appNameRE)
		case apps[ac.Name] != nil:
			bad(key+".name", "%q: duplicate application", ac.Name)
		}
		var err error
		if app.origins, err = compileOrigins(ac.Origins.Allowed); err != nil {
			bad(key+".origins.allowed", "%v", err)
		}
		app.allowMissingOrigin = ac.Origins.AllowMissing
		if len(ac.Origins.Allowed) == 0 && !ac.Origins.AllowMissing {
			bad(key+".origins", "allowed is empty and allow_missing is false: no client could connect")
		}
		if app.sip, err = compileTemplate(ac.SIPIdentity); err != nil {
			bad(key+".sip_identity", "%v", err)
		}
		switch ac.SIPIdentity.Assert {
		case AssertNone, AssertAsserted, AssertPreferred:
		default:
			bad(key+".sip_identity.assert", "%q is not asserted, preferred or empty", ac.SIPIdentity.Assert)
		}
		switch ac.Mode {
		case ModeJWT:
			if ac.JWT == nil {
				bad(key+".jwt", "required for mode jwt")
				break
			}
			app.jwt, err = compileJWT(key+".jwt", ac.JWT, ac.Origins)
			if err != nil {
				errs = append(errs, err)
			}
		case ModeGuest:
			if ac.Guest == nil {
				bad(key+".guest", "required for mode guest")
				break
			}
			if !validDomain(ac.Guest.Domain) {
				bad(key+".guest.domain", "%q: must be a domain name", ac.Guest.Domain)
			}
			app.guestDomain = strings.ToLower(ac.Guest.Domain)
			app.guestKey = []byte(ac.Guest.CookieSecret)
			if len(app.guestKey) == 0 {
				app.guestKey = make([]byte, 32)
				rand.Read(app.guestKey)
			} else if len(app.guestKey) < 16 {
				bad(key+".guest.cookie_secret", "must be at least 16 bytes")
			}
			app.guestTTL = ac.Guest.CookieTTL
			if app.guestTTL == 0 {
				app.guestTTL = 12 * time.Hour
			} else if app.guestTTL < time.Minute {
				bad(key+".guest.cookie_ttl", "must be at least 1m")
			}
			app.guestPolicy = GuestPolicy{IdleResumeTimeout: ac.Guest.IdleResumeTimeout, SessionsPerAddress: ac.Guest.SessionsPerAddress}
			switch {
			case ac.Guest.IdleResumeTimeout < 0:
				bad(key+".guest.idle_resume_timeout", "must not be negative")
			case ac.Guest.IdleResumeTimeout == 0:
				app.guestPolicy.IdleResumeTimeout = defaultGuestIdleResume
			}
			if ac.Guest.SessionsPerAddress == 0 {
				app.guestPolicy.SessionsPerAddress = defaultGuestPerAddress
			}
			if len(ac.Guest.AllowedTargets) == 0 {
				bad(key+".guest.allowed_targets", "required: guests may call only listed targets")
			}
			for j, p := range ac.Guest.AllowedTargets {
				pat, ok := normalizeAddress(p, true)
				if !ok {
					bad(fmt.Sprintf("%s.guest.allowed_targets[%d]", key, j), "%q: not an address or pattern", p)
					continue
				}
				app.targets = append(app.targets, pat)
			}
		case ModeOpen:
		case "":
			bad(key+".mode", "required: jwt, guest or open")
		default:
			bad(key+".mode", "%q: must be jwt, guest or open", ac.Mode)
		}
		if ac.Mode != ModeJWT && ac.JWT != nil {
			bad(key+".jwt", "set, but mode is %q", ac.Mode)
		}
		if ac.Mode != ModeGuest && ac.Guest != nil {
			bad(key+".guest", "set, but mode is %q", ac.Mode)
		}
		if ac.Name != "" && apps[ac.Name] == nil {
			apps[ac.Name] = app
		}
	}
	return apps, errors.Join(errs...)
}

func compileJWT(key string, jc *JWTConfig, oc OriginConfig) (*jwtVerifier, error) {
	var errs []error
	bad := func(k, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", key, k, fmt.Sprintf(format, a...)))
	}
	v := &jwtVerifier{
		maxLifetime:    jc.MaxLifetime,
		revokeOnLogout: jc.RevokeOnLogout,
		issuer:         jc.Issuer,
		audience:       jc.Audience,
		skew:           jc.ClockSkew,
		claim:          jc.IdentityClaim,
		cookie:         jc.Cookie,
	}
	if jc.Issuer == "" {
		bad(".issuer", "required")
	}
	if len(jc.Audience) == 0 || slices.Contains(jc.Audience, "") {
		bad(".audience", "required, and no entry may be empty")
	}
	if jc.ClockSkew < 0 || jc.ClockSkew > 10*time.Minute {
		bad(".clock_skew", "%v: must be between 0 and 10m", jc.ClockSkew)
	}
	if jc.IdentityClaim == "" {
		bad(".identity_claim", "required")
	}
	if jc.MaxLifetime < 0 || jc.MaxLifetime > 0 && jc.MaxLifetime < time.Minute {
		bad(".max_lifetime", "%v: must be 0 (no maximum) or at least 1m", jc.MaxLifetime)
	}
	for i, s := range jc.TokenSources {
		switch s {
		case sourceHeader, sourceQuery:
		case sourceCookie:
			if jc.Cookie == "" {
				bad(".cookie", "required when token_sources has cookie")
			}
			if len(oc.Allowed) == 0 {
				// A cookie is sent by the browser on any site's behalf:
				// only the Origin check stops a hijack.
				bad(".token_sources", "cookie needs origins.allowed")
			}
		default:
			bad(fmt.Sprintf(".token_sources[%d]", i), "%q: must be header, query or cookie", s)
		}
		if slices.Index(jc.TokenSources, s) != i {
			bad(fmt.Sprintf(".token_sources[%d]", i), "%q: duplicate", s)
		}
	}
	v.sources = jc.TokenSources
	for i, kc := range jc.Keys {
		k, err := loadKey(kc)
		if err != nil {
			bad(fmt.Sprintf(".keys[%d]", i), "%v", err)
			continue
		}
		v.static = append(v.static, k)
	}
	if jc.JWKS != nil {
		j := jc.JWKS
		u, err := url.Parse(j.URL)
		switch {
		case j.URL == "":
			bad(".jwks.url", "required")
		case err != nil:
			bad(".jwks.url", "%v", err)
		case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
			bad(".jwks.url", "%q: must be https (http only on a loopback host)", j.URL)
		}
		if j.Refresh <= 0 {
			bad(".jwks.refresh", "must be positive")
		}
		if j.MinRefresh <= 0 || j.MinRefresh > j.Refresh {
			bad(".jwks.min_refresh", "must be positive and at most refresh")
		}
		if j.Timeout <= 0 {
			bad(".jwks.timeout", "must be positive")
		}
		v.jwksConfig = j
	}
	if len(jc.Keys) == 0 && jc.JWKS == nil {
		bad("", "needs keys or jwks")
	}
	return v, errors.Join(errs...)
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}
