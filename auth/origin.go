package auth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// origin is a parsed Origin (RFC 6454): scheme, lowercase host, port
// (empty for the scheme's default).
type origin struct {
	scheme, host, port string
}

// originRule is one allow-list entry: an exact origin, or with wildcard
// set, any host ending in "."+host.
type originRule struct {
	origin
	wildcard bool
}

// parseOrigin parses the serialisation of an origin. It refuses anything
// a browser would not send: paths, queries, user info, other schemes.
func parseOrigin(s string) (origin, error) {
	u, err := url.Parse(s)
	if err != nil {
		return origin{}, errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return origin{}, errors.New("scheme must be http or https")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return origin{}, errors.New("an origin is scheme://host[:port] only")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return origin{}, errors.New("no host")
	}
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	return origin{scheme: u.Scheme, host: host, port: port}, nil
}

func compileOrigins(list []string) ([]originRule, error) {
	var errs []error
	rules := make([]originRule, 0, len(list))
	for i, s := range list {
		wildcard := false
		probe := s
		if rest, ok := strings.CutPrefix(s, "https://*."); ok {
			wildcard, probe = true, "https://"+rest
		} else if rest, ok := strings.CutPrefix(s, "http://*."); ok {
			wildcard, probe = true, "http://"+rest
		}
		o, err := parseOrigin(probe)
		if err == nil && strings.Contains(o.host, "*") {
			err = errors.New(`"*" is allowed only as the whole leftmost label`)
		}
		if err == nil && wildcard && !strings.Contains(o.host, ".") && net.ParseIP(o.host) == nil {
			err = errors.New("a pattern needs at least two labels after *")
		}
		if err == nil && wildcard && net.ParseIP(o.host) != nil {
			err = errors.New("a pattern cannot be an IP address")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("[%d] %q: %v", i, s, err))
			continue
		}
		rules = append(rules, originRule{origin: o, wildcard: wildcard})
	}
	return rules, errors.Join(errs...)
}

func (r originRule) match(o origin) bool {
	if r.scheme != o.scheme || r.port != o.port {
		return false
	}
	if !r.wildcard {
		return r.host == o.host
	}
	return len(o.host) > len(r.host)+1 && strings.HasSuffix(o.host, "."+r.host)
}

// checkOrigin applies an application's Origin rules to the header values.
func (a *application) checkOrigin(values []string) error {
	if len(values) == 0 {
		if a.allowMissingOrigin {
			return nil
		}
		return newError(ErrForbiddenOrigin, errors.New("no Origin header"))
	}
	if len(values) > 1 {
		return newError(ErrForbiddenOrigin, errors.New("several Origin headers"))
	}
	o, err := parseOrigin(values[0])
	if err != nil {
		return newError(ErrForbiddenOrigin, err)
	}
	for _, r := range a.origins {
		if r.match(o) {
			return nil
		}
	}
	return newError(ErrForbiddenOrigin, fmt.Errorf("origin %s://%s not allowed", o.scheme, o.host))
}
