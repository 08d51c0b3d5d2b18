package sipgw

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the one check of every value a web client gives that
// becomes a SIP header: extension headers (mapped by calls.sip_headers)
// and a message's Content-Type. Names are RFC 3261 tokens that sipgw does
// not own; values follow the grammar of RFC 3261 section 25.1 for their
// header, narrowed where a permissive rule would let a value mislead the
// parsers downstream.

// Header is an extension header to put on a SIP request or response. The
// gateway maps web extension headers to these by configured rules; sipgw
// still checks each one (see [ValidateHeader]).
type Header struct {
	Name  string
	Value string
}

// HeaderError is a header refused toward SIP. It matches ErrInvalidInput
// (the gateway answers error 400); Problem completes a sentence whose
// subject is the header's name.
type HeaderError struct {
	Name    string
	Problem string // e.g. "is set by the gateway"
}

func (e *HeaderError) Error() string { return fmt.Sprintf("header %q %s", e.Name, e.Problem) }

// Unwrap makes every HeaderError match ErrInvalidInput.
func (e *HeaderError) Unwrap() error { return ErrInvalidInput }

// maxHeaderValue bounds an extension header's value, in bytes.
const maxHeaderValue = 1024

// reservedHeaders are the headers sipgw builds itself, and those that
// assert identity, steer routing, dialogs, authentication or what the
// peer must support: an extension header may never set them. Compact
// forms (RFC 3261 section 7.3.3 and the RFCs that define them) are listed
// with their headers.
var reservedHeaders = map[string]bool{
	// Transactions, dialogs, routing (RFC 3261, 3327, 3608).
	"via": true, "v": true, "from": true, "f": true, "to": true, "t": true,
	"call-id": true, "i": true, "cseq": true, "contact": true, "m": true,
	"max-forwards": true, "route": true, "record-route": true,
	"path": true, "service-route": true,
	// The body.
	"content-length": true, "l": true, "content-type": true, "c": true,
	"content-encoding": true, "e": true, "content-disposition": true, "mime-version": true,
	// Authentication (RFC 3261, 3329).
	"authorization": true, "proxy-authorization": true,
	"www-authenticate": true, "proxy-authenticate": true, "authentication-info": true,
	"security-client": true, "security-server": true, "security-verify": true,
	// Identity: the gateway alone asserts who calls (RFC 3325, 3323,
	// 8224, 4474, 7044, 5502, 5806).
	"p-asserted-identity": true, "p-preferred-identity": true, "privacy": true,
	"identity": true, "y": true, "identity-info": true, "n": true,
	"remote-party-id": true, "history-info": true, "diversion": true,
	"p-called-party-id": true, "p-served-user": true,
	// Extensions and capabilities (RFC 3261, 6665, 6086).
	"require": true, "proxy-require": true, "supported": true, "k": true,
	"unsupported": true, "allow": true, "allow-events": true, "u": true,
	"accept": true, "user-agent": true, "server": true,
	"info-package": true, "recv-info": true,
	// Events and publications (RFC 6665, 3903).
	"event": true, "o": true, "subscription-state": true, "expires": true,
	"min-expires": true, "sip-if-match": true, "sip-etag": true,
	// Reliable provisional responses (RFC 3262).
	"rseq": true, "rack": true,
	// Transfer and dialog references (RFC 3515, 3892, 3891, 3911, 4538).
	"refer-to": true, "r": true, "referred-by": true, "b": true, "replaces": true,
	"join": true, "target-dialog": true, "refer-sub": true,
	// Session timers (RFC 4028).
	"session-expires": true, "x": true, "min-se": true,
	// Caller preferences steer forking (RFC 3841).
	"accept-contact": true, "a": true, "reject-contact": true, "j": true,
	"request-disposition": true, "d": true,
}

// ValidateHeaderName checks the name of an extension header to be
// mapped to SIP: a token of letters, digits and '-' that starts with a
// letter (the intersection of RFC 3261's token and docs/protocol.md §2.4's
// extension header names), and not one that sipgw owns. The error is a
// *HeaderError.
func ValidateHeaderName(name string) error {
	if len(name) == 0 || len(name) > 64 {
		return &HeaderError{name, "is not a header name (1 to 64 letters, digits and '-')"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c|0x20 >= 'a' && c|0x20 <= 'z'
		if !letter && (i == 0 || !(c == '-' || (c >= '0' && c <= '9'))) {
			return &HeaderError{name, "is not a header name (letters, digits and '-', starting with a letter)"}
		}
	}
	if reservedHeaders[strings.ToLower(name)] {
		return &HeaderError{name, "is set by the gateway"}
	}
	return nil
}

// ValidateHeader checks an extension header from a web client before it
// goes into SIP: its name (see [ValidateHeaderName]) and its value. The
// error is a *HeaderError naming the header.
func ValidateHeader(h Header) error {
	if err := ValidateHeaderName(h.Name); err != nil {
		return err
	}
	return checkHeaderValue(h.Name, h.Value)
}

// checkHeaderValue checks value against the grammar of header name:
// media-type for Content-Type, the extension-header rule for others.
func checkHeaderValue(name, value string) error {
	var problem string
	if strings.EqualFold(name, "content-type") {
		problem = mediaTypeProblem(value)
	} else {
		problem = extensionValueProblem(value)
	}
	if problem != "" {
		return &HeaderError{name, problem}
	}
	return nil
}

// extensionValueProblem says what makes v unfit as the value of an
// extension header, or "" when nothing does. RFC 3261 section 25.1 allows
// header-value = *(TEXT-UTF8char / UTF8-CONT / LWS): printable ASCII,
// UTF-8 beyond it, and linear white space. The policy is stricter:
//   - no CR or LF, so no line folding: a value is one line;
//   - no other control character, in ASCII (NUL, DEL...) or beyond (C1
//     controls such as U+0085 NEL, which some stacks read as a newline);
//   - no line or paragraph separator (U+2028, U+2029), no format
//     character (the byte order mark U+FEFF, zero-width and
//     bidirectional controls, which make a value read otherwise than it
//     is), no private-use, unassigned or non-character code point: beyond
//     ASCII only what unicode.IsPrint accepts;
//   - no '<' or '>': an extension header's grammar is not known here, and
//     in the many whose values are name-addr they would start a URI.
func extensionValueProblem(v string) string { return valueProblem(v, false) }

// valueProblem is extensionValueProblem, with angle brackets allowed when
// angles is set.
func valueProblem(v string, angles bool) string {
	if len(v) > maxHeaderValue {
		return fmt.Sprintf("value is over %d bytes", maxHeaderValue)
	}
	if !utf8.ValidString(v) {
		return "value is not UTF-8"
	}
	for _, r := range v {
		switch {
		case r == ' ' || r == '\t':
		case r < 0x21 || r == 0x7f:
			return fmt.Sprintf("value has the control character %U", r)
		case (r == '<' || r == '>') && !angles:
			return fmt.Sprintf("value has %q, which is not allowed in extension headers", r)
		case r >= 0x80 && !unicode.IsPrint(r):
			return fmt.Sprintf("value has %U, which is not allowed in SIP header values", r)
		}
	}
	return ""
}

// mediaTypeProblem checks a Content-Type value (RFC 3261 section 25.1):
// media-type = m-type SLASH m-subtype *(SEMI m-parameter), each a token,
// a parameter's value a token or a quoted-string of printable ASCII.
func mediaTypeProblem(v string) string {
	const bad = "is not a media type (type/subtype;name=value)"
	if len(v) > 128 {
		return "value is over 128 bytes"
	}
	s := scanText{s: v}
	if !s.token() || !s.sep('/') || !s.token() {
		return bad
	}
	for s.lws(); s.i < len(s.s); s.lws() {
		if !s.sep(';') || !s.token() || !s.sep('=') || !(s.token() || s.quoted()) {
			return bad
		}
	}
	return ""
}

// scanText reads the few rules of RFC 3261's grammar a media type needs.
type scanText struct {
	s string
	i int
}

func (p *scanText) lws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// sep reads c with optional white space around it (SLASH, SEMI, EQUAL).
func (p *scanText) sep(c byte) bool {
	p.lws()
	if p.i == len(p.s) || p.s[p.i] != c {
		return false
	}
	p.i++
	p.lws()
	return true
}

func (p *scanText) token() bool {
	j := p.i
	for j < len(p.s) && (isAlnum(p.s[j]) || strings.IndexByte("-.!%*_+`'~", p.s[j]) >= 0) {
		j++
	}
	ok := j > p.i
	p.i = j
	return ok
}

// quoted reads a quoted-string of printable ASCII and spaces; a
// quoted-pair escapes '"' or '\'.
func (p *scanText) quoted() bool {
	if p.i == len(p.s) || p.s[p.i] != '"' {
		return false
	}
	for j := p.i + 1; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			p.i = j + 1
			return true
		case c == '\\' && j+1 < len(p.s) && (p.s[j+1] == '"' || p.s[j+1] == '\\'):
			j++
		case c < 0x20 || c > 0x7e || c == '\\':
			return false
		}
	}
	return false
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z')
}
