package auth

import (
	"errors"
	"fmt"
	"github.com/jsonrtc/jsonrtc/routing"
	"strings"
)

// Identities end up in SIP headers (From, P-Asserted-Identity) and in
// frames, so they are held to a strict syntax: a user part of RFC 3261
// unreserved characters (letters, digits and -_.!~*'+, without the
// escapes and the characters that delimit URI parameters), optionally
// "@" and a host name. Nothing that could end a header or a URI (CR, LF,
// space, quotes, <, >, ;, ?, %) gets through.
const maxIdentityLen = 256

func userChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-_.!~*'+", c) >= 0
}

func validUser(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !userChar(s[i]) {
			return false
		}
	}
	return true
}

// validDomain accepts host names of letter-digit-hyphen labels.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// parseIdentity checks an identity, strips a "sip:"/"sips:" scheme and
// lowercases its domain. It returns false when the syntax is not allowed.
func parseIdentity(s string) (string, bool) {
	if len(s) > maxIdentityLen {
		return "", false
	}
	s = stripSIPScheme(s)
	user, domain, hasDomain := strings.Cut(s, "@")
	if !validUser(user) || (hasDomain && !validDomain(domain)) {
		return "", false
	}
	if hasDomain {
		return user + "@" + strings.ToLower(domain), true
	}
	return user, true
}

func stripSIPScheme(s string) string {
	if len(s) >= 4 && strings.EqualFold(s[:4], "sip:") {
		return s[4:]
	}
	if len(s) >= 5 && strings.EqualFold(s[:5], "sips:") {
		return s[5:]
	}
	return s
}

// sipTemplate maps identities to SIP URIs, and says how SIP requests
// present them.
type sipTemplate struct {
	template, defaultDomain string
	setsFrom                bool // a configured template, not the default
	assert                  string
	guestPrivacy            bool
}

func compileTemplate(c SIPIdentityConfig) (sipTemplate, error) {
	t := c.Template
	if !strings.HasPrefix(t, "sip:") && !strings.HasPrefix(t, "sips:") {
		return sipTemplate{}, fmt.Errorf("template %q: must start with sip: or sips:", t)
	}
	rest := strings.NewReplacer("{identity}", "", "{user}", "", "{domain}", "").Replace(t)
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>"{}\`, c) >= 0 {
			return sipTemplate{}, fmt.Errorf("template %q: character %q not allowed (placeholders are {identity}, {user}, {domain})", t, c)
		}
	}
	if c.DefaultDomain != "" && !validDomain(c.DefaultDomain) {
		return sipTemplate{}, fmt.Errorf("default_domain %q: must be a domain name", c.DefaultDomain)
	}
	return sipTemplate{template: t, defaultDomain: strings.ToLower(c.DefaultDomain),
		setsFrom: !c.defaulted, assert: c.Assert, guestPrivacy: c.GuestPrivacy}, nil
}

// apply maps a parsed identity. The values substituted were checked by
// parseIdentity and the template at startup, so the result is a safe URI.
func (t sipTemplate) apply(identity string) (string, error) {
	user, domain, ok := strings.Cut(identity, "@")
	if !ok {
		domain = t.defaultDomain
	}
	if domain == "" && strings.Contains(t.template, "{domain}") {
		return "", errors.New("identity has no domain and sip_identity.default_domain is not set")
	}
	return strings.NewReplacer("{identity}", identity, "{user}", user, "{domain}", domain).Replace(t.template), nil
}

// normalizeAddress prepares a target, or with pattern set an
// allowed_targets entry, for matching: a sip:/sips: scheme is dropped, a
// tel: scheme kept (lowercased), the domain lowercased. It refuses
// anything outside the identity syntax (plus "*" in patterns, and tel:
// numbers of digits, "+", "-", "." and "*"/"#").
func normalizeAddress(s string, pattern bool) (string, bool) {
	if len(s) > maxIdentityLen {
		return "", false
	}
	if len(s) >= 4 && strings.EqualFold(s[:4], "tel:") {
		num := s[4:]
		if num == "" {
			return "", false
		}
		for i := 0; i < len(num); i++ {
			c := num[i]
			if !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.' || c == '#' || c == '*') {
				return "", false
			}
		}
		return "tel:" + num, true
	}
	s = stripSIPScheme(s)
	user, domain, hasDomain := strings.Cut(s, "@")
	check := func(part string, f func(string) bool) bool {
		if pattern {
			part = strings.ReplaceAll(part, "*", "x")
		}
		return f(part)
	}
	if !check(user, validUser) || (hasDomain && !check(domain, validDomain)) {
		return "", false
	}
	if hasDomain {
		return user + "@" + strings.ToLower(domain), true
	}
	return user, true
}

// globMatch reports whether s matches pattern, where "*" matches any run
// of characters other than "@". Backtracking is bounded by len(s) per
// star, and inputs are at most maxIdentityLen bytes.
func globMatch(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			starP, starS = px, sx
			px++
		case px < len(pattern) && pattern[px] == s[sx]:
			px++
			sx++
		case starP >= 0 && s[starS] != '@':
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// Sender is how the requests the gateway sends to SIP for p present it
// (docs/routing.md, "Identity"): From from its application's configured
// sip_identity template (none configured: the zero From, the AOR), the
// identity header the application asserts, and privacy for its guests.
// The SIP side checks every URI again against the SIP grammar.
func (p *Principal) Sender() routing.Sender {
	var s routing.Sender
	if p == nil || p.app == nil || p.SIPIdentity == "" {
		return s
	}
	t := p.app.sip
	if t.setsFrom {
		s.From = p.SIPIdentity
	}
	switch t.assert {
	case AssertAsserted:
		s.AssertedIdentity = p.SIPIdentity
	case AssertPreferred:
		s.PreferredIdentity = p.SIPIdentity
	}
	s.Privacy = p.Guest && t.guestPrivacy
	return s
}
