package sipgw

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// ErrInvalidInput wraps every rejection of a value that came from a web
// frame (target, identity, display name, extension header). The gateway
// answers it with error 400.
var ErrInvalidInput = errors.New("sipgw: invalid input")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidInput, fmt.Sprintf(format, a...))
}

// ValidateDisplayName checks a display name before it is quoted into a
// From or To header.
func ValidateDisplayName(s string) error {
	if len(s) > 128 {
		return invalid("display name too long")
	}
	if hasCtl(s) || strings.ContainsAny(s, "\"\\") {
		return invalid("display name %q", s)
	}
	return nil
}

// AOR maps a web identity to its SIP address of record:
// alice@example.com -> sip:alice@example.com (with the domain rewritten
// by identity_domains), sip:alice@example.com as is, a bare user name ->
// sip:user@<domain>.
func (g *UserAgent) AOR(identity string) (sip.Uri, error) {
	u, err := g.parseURI(identity, false)
	if err != nil {
		return u, err
	}
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return u, invalid("identity %q is not a SIP identity", identity)
	}
	if u.User == "" {
		return u, invalid("identity %q has no user", identity)
	}
	return u, nil
}

// ParseTarget maps a call or message target from a web frame to a
// request URI: bob@example.com, sip:bob@example.com, sips:..., a bare user
// (-> sip:user@<domain>), tel:+15551234567 or +15551234567 (->
// sip:+15551234567@<tel_domain>;user=phone). Parameters, headers, ports,
// passwords and anything sipgo's parser would not round-trip are refused.
func (g *UserAgent) ParseTarget(target string) (sip.Uri, error) {
	return g.parseURI(target, true)
}

func (g *UserAgent) parseURI(s string, allowTel bool) (sip.Uri, error) {
	var u sip.Uri
	if s == "" || len(s) > 256 {
		return u, invalid("empty or too long address")
	}
	if hasCtl(s) || strings.ContainsAny(s, " \t;?<>,\"'\\&=[]{}|^`") {
		return u, invalid("address %q has forbidden characters", s)
	}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "tel:") || (looksLikeNumber(s) && !strings.Contains(s, "@")):
		if !allowTel {
			return u, invalid("%q is not a SIP identity", s)
		}
		num := s
		if strings.HasPrefix(lower, "tel:") {
			num = s[4:]
		}
		if !looksLikeNumber(num) {
			return u, invalid("tel number %q", num)
		}
		num = strings.Map(func(r rune) rune {
			if r == '-' || r == '.' || r == '(' || r == ')' {
				return -1 // visual separators, RFC 3966
			}
			return r
		}, num)
		u = sip.Uri{Scheme: "sip", User: num, Host: g.cfg.TelDomain, UriParams: sip.NewParams()}
		u.UriParams.Add("user", "phone")
		return u, nil
	case strings.HasPrefix(lower, "sip:") || strings.HasPrefix(lower, "sips:"):
	default:
		if !strings.Contains(s, "@") {
			s = s + "@" + g.cfg.Domain
		}
		s = "sip:" + s
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, invalid("address %q: %v", s, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Password != "" || u.Port != 0 || u.UriParams.Length() > 0 || u.Headers.Length() > 0 {
		return u, invalid("address %q may not carry password, port, parameters or headers", s)
	}
	if !validHost(u.Host) || !validUser(u.User) {
		return u, invalid("address %q", s)
	}
	if d, ok := g.cfg.IdentityDomains[strings.ToLower(u.Host)]; ok {
		u.Host = d
	}
	// What we send must be exactly what we checked.
	var back sip.Uri
	if err := sip.ParseUri(u.String(), &back); err != nil || back.User != u.User || back.Host != u.Host {
		return u, invalid("address %q does not round-trip", s)
	}
	return u, nil
}

// looksLikeNumber: a tel: number the way routing's prefix rules see it.
func looksLikeNumber(s string) bool { return routing.IsNumber(s) }

func validUser(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z') ||
			strings.IndexByte("-_.!~*()+$/%", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// validHost: the host rules are routing's, so that what a rewrite builds
// and what we accept agree.
func validHost(s string) bool { return routing.ValidHost(s) }

// hasCtl reports control characters (CR, LF, NUL and the rest of C0, DEL)
// other than tab.
func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f {
			return true
		}
	}
	return false
}
