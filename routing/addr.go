package routing

import (
	"net"
	"strings"
)

// addr is a target taken apart for matching and rewriting. Targets come
// from web frames: nothing here trusts them, and what a rewrite builds is
// checked again by the SIP side (sipgw.ParseTarget) before it is sent.
type addr struct {
	scheme string // "", "sip", "sips", "tel" (lower case)
	user   string
	host   string // lower case
	// number: tel:, a bare number, or a SIP URI whose user is a number.
	number bool
	// match is what target patterns and regexes see: the target lower
	// cased, without a sip: or sips: scheme.
	match string
}

func parseAddr(s string) addr {
	var a addr
	lower := strings.ToLower(s)
	rest := s
	for _, sc := range []string{"sips", "sip", "tel"} {
		if strings.HasPrefix(lower, sc+":") {
			a.scheme, rest = sc, s[len(sc)+1:]
			break
		}
	}
	a.match = strings.ToLower(stripScheme(s))
	if a.scheme == "tel" {
		a.user = rest
		a.number = IsNumber(rest)
		return a
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		a.user, a.host = rest[:at], strings.ToLower(rest[at+1:])
	} else if a.scheme == "" {
		a.user = rest
	} else {
		a.host = strings.ToLower(rest)
	}
	a.number = IsNumber(a.user)
	return a
}

func (a addr) String() string {
	switch a.scheme {
	case "tel":
		return "tel:" + a.user
	case "sip", "sips":
		if a.user == "" {
			return a.scheme + ":" + a.host
		}
		return a.scheme + ":" + a.user + "@" + a.host
	}
	if a.host == "" {
		return a.user
	}
	return a.user + "@" + a.host
}

// rewrite applies rw to the target t parsed from.
func rewrite(t addr, rw RewriteConfig) string {
	if t.number {
		num := digitsOf(t.user)
		if rw.StripPrefix > 0 {
			num = num[min(rw.StripPrefix, len(num)):]
		}
		if rw.E164 != nil {
			num = e164(num, *rw.E164)
		}
		if rw.AddPrefix != "" && !strings.HasPrefix(num, "+") {
			num = rw.AddPrefix + num
		}
		if num != "" {
			t.user = num
		}
	}
	if rw.Domain != "" && t.user != "" {
		t.host = strings.ToLower(rw.Domain)
		if t.scheme == "tel" {
			t.scheme = "sip"
		}
	}
	return t.String()
}

// e164 normalises num (digits, maybe a leading +) to +<cc><national
// number> (ITU-T E.164): numbers already with + are kept; the
// international prefix becomes +; the national prefix, or with none
// configured any number, gets +<country code>.
func e164(num string, c E164Config) string {
	switch {
	case strings.HasPrefix(num, "+"):
		return num
	case c.InternationalPrefix != "" && strings.HasPrefix(num, c.InternationalPrefix):
		return "+" + num[len(c.InternationalPrefix):]
	case c.NationalPrefix != "" && strings.HasPrefix(num, c.NationalPrefix):
		return "+" + c.CountryCode + num[len(c.NationalPrefix):]
	case c.NationalPrefix == "":
		return "+" + c.CountryCode + num
	}
	return num // a short code ("112"): not a national number
}

func stripScheme(s string) string {
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "sip:"):
		return s[4:]
	case strings.HasPrefix(lower, "sips:"):
		return s[5:]
	}
	return s
}

// IsNumber reports a phone number: digits with an optional leading +, visual separators (RFC
// 3966: - . ( )) and * #, at most 32 characters, at least one digit.
func IsNumber(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '+' && i == 0, c == '-', c == '.', c == '(', c == ')', c == '*', c == '#':
		default:
			return false
		}
	}
	return digits > 0
}

// digitsOf drops the visual separators of a number.
func digitsOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidHost reports whether s is a host name (RFC 1123 labels) or an IP
// address (no zone): what may stand as the host of a SIP URI we build.
func ValidHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	if ip := net.ParseIP(s); ip != nil {
		return true
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z')) {
				return false
			}
		}
	}
	return true
}

func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
