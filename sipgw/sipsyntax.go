package sipgw

import "bytes"

// The grammar of the few SIP fields the request check reads (RFC 3261
// 25.1), on raw bytes and without allocating: malformed.go uses them.

func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimLWS(msg []byte, s span) span {
	for s.off < s.end && isLWS(msg[s.off]) {
		s.off++
	}
	for s.end > s.off && isLWS(msg[s.end-1]) {
		s.end--
	}
	return s
}

// atoi reads 1 to 9 digits.
func atoi(b []byte) (int, bool) {
	if len(b) > 9 || !isDigits(b) {
		return 0, false
	}
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseCSeq reads "1*DIGIT LWS Method"; the number saturates.
func parseCSeq(v []byte) (num uint64, method []byte, ok bool) {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		if num < 1<<40 {
			num = num*10 + uint64(v[i]-'0')
		}
		i++
	}
	if i == 0 || i == len(v) || !isLWS(v[i]) {
		return 0, nil, false
	}
	for i < len(v) && isLWS(v[i]) {
		i++
	}
	method = v[i:]
	return num, method, isToken(method)
}

// via is what the top Via says about where the answer goes.
type via struct {
	host  span
	port  int // 0 when absent
	rport int // end of a valueless rport parameter, 0 when none
	end   int // end of the first via-parm, where received goes
	ok    bool
	bad   bool // the sent-by is usable, its parameters are not
}

// parseVia reads the first via-parm of a Via field value (RFC 3261
// 20.42, 25.1), LWS allowed around separators:
// SIP / 2.0 / UDP host[:port] *(; name[=value]) [, ...]
func parseVia(msg []byte, s span) via {
	var v via
	p := scanner{b: msg[:s.end], i: s.off}
	p.lws()
	if !foldEq(p.token(), "sip") {
		return v
	}
	for range 2 {
		p.lws()
		if !p.eat('/') {
			return v
		}
		p.lws()
		if len(p.token()) == 0 {
			return v
		}
	}
	if p.lws() == 0 {
		return v
	}
	start := p.i
	if p.eat('[') {
		for p.i < len(p.b) && p.b[p.i] != ']' && !isLWS(p.b[p.i]) {
			p.i++
		}
		if !p.eat(']') {
			return v
		}
	} else {
		for p.i < len(p.b) && isHostChar(p.b[p.i]) {
			p.i++
		}
	}
	if p.i == start {
		return v
	}
	v.host = span{start, p.i}
	p.lws()
	if p.eat(':') {
		p.lws()
		d := p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		port, ok := atoi(p.b[d:p.i])
		if !ok || port < 1 || port > 65535 {
			return v
		}
		v.port = port
	}
	v.ok = true
	for {
		v.end = p.i
		p.lws()
		if p.i == len(p.b) || p.b[p.i] == ',' {
			return v
		}
		if !p.eat(';') {
			v.bad = true
			return v
		}
		p.lws()
		name := p.token()
		if len(name) == 0 {
			v.bad = true // RFC 4475 3.1.2.1 badinv01
			return v
		}
		p.lws()
		if p.eat('=') {
			p.lws()
			if !p.value() {
				v.bad = true
				return v
			}
		} else if foldEq(name, "rport") {
			v.rport = p.i
		}
	}
}

// checkAddr validates a From or To value (RFC 3261 20.20, 20.39, 25.1):
// name-addr or addr-spec, then parameters. It catches what RFC 4475
// 3.1.2.5, 3.1.2.14 and 3.1.2.15 (quotbal, badaspec, baddn) show.
func checkAddr(v []byte) (tag bool, ok bool) {
	p := scanner{b: v}
	if p.peek() == '"' {
		if !p.quoted() {
			return false, false
		}
		p.lws()
		if p.peek() != '<' {
			return false, false
		}
	} else if lt := bytes.IndexByte(v, '<'); lt >= 0 {
		for _, c := range v[:lt] {
			if !isLWS(c) && !isTokenChar(c) {
				return false, false
			}
		}
		p.i = lt
	}
	if p.eat('<') {
		start := p.i
		for p.i < len(p.b) && p.b[p.i] != '>' {
			if c := p.b[p.i]; isLWS(c) || c == '<' || c == '"' {
				return false, false
			}
			p.i++
		}
		if _, ok := schemeOf(p.b[start:p.i]); !ok || !p.eat('>') {
			return false, false
		}
	} else {
		// addr-spec: no LWS, and never ',' or '?', which need brackets
		// (RFC 3261 20.10).
		start := p.i
		for p.i < len(p.b) && p.b[p.i] != ';' && !isLWS(p.b[p.i]) {
			if c := p.b[p.i]; c == ',' || c == '?' || c == '"' || c == '<' || c == '>' {
				return false, false
			}
			p.i++
		}
		if _, ok := schemeOf(p.b[start:p.i]); !ok {
			return false, false
		}
	}
	for {
		p.lws()
		if p.i == len(p.b) {
			return tag, true
		}
		if !p.eat(';') {
			return false, false
		}
		p.lws()
		name := p.token()
		if len(name) == 0 {
			return false, false
		}
		tag = tag || foldEq(name, "tag")
		p.lws()
		if p.eat('=') {
			p.lws()
			if !p.value() {
				return false, false
			}
		}
	}
}

// schemeOf returns a URI's scheme: ALPHA *( ALPHA / DIGIT / "+" / "-"
// / "." ) followed by ':' and something.
func schemeOf(uri []byte) ([]byte, bool) {
	colon := bytes.IndexByte(uri, ':')
	if colon <= 0 || colon == len(uri)-1 || !isAlpha(uri[0]) {
		return nil, false
	}
	for _, c := range uri[1:colon] {
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return nil, false
		}
	}
	return uri[:colon], true
}

// hasHeaders reports a "?" after the host part of a SIP URI: the user
// part may hold one (RFC 3261 25.1 user-unreserved).
func hasHeaders(uri []byte) bool {
	if at := bytes.IndexByte(uri, '@'); at >= 0 {
		uri = uri[at:]
	}
	return bytes.IndexByte(uri, '?') >= 0
}

// scanner walks a field value.
type scanner struct {
	b []byte
	i int
}

func (p *scanner) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *scanner) eat(c byte) bool {
	if p.peek() == c && p.i < len(p.b) {
		p.i++
		return true
	}
	return false
}

// lws skips linear white space (folds included) and says how much.
func (p *scanner) lws() int {
	start := p.i
	for p.i < len(p.b) && isLWS(p.b[p.i]) {
		p.i++
	}
	return p.i - start
}

func (p *scanner) token() []byte {
	start := p.i
	for p.i < len(p.b) && isTokenChar(p.b[p.i]) {
		p.i++
	}
	return p.b[start:p.i]
}

// quoted skips a quoted-string with its quoted-pairs.
func (p *scanner) quoted() bool {
	if !p.eat('"') {
		return false
	}
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '\\':
			p.i += 2
		case '"':
			p.i++
			return true
		default:
			p.i++
		}
	}
	return false
}

// value skips a gen-value: token, host or quoted-string.
func (p *scanner) value() bool {
	if p.peek() == '"' {
		return p.quoted()
	}
	start := p.i
	for p.i < len(p.b) && (isTokenChar(p.b[p.i]) || p.b[p.i] == ':' || p.b[p.i] == '[' || p.b[p.i] == ']') {
		p.i++
	}
	return p.i > start
}

// isTokenChar: alphanum and -.!%*_+`'~ (RFC 3261 25.1).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isHostChar(c byte) bool {
	return isAlpha(c) || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
}

func isAlpha(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// foldEq compares b with the lower-case ASCII s, ignoring case.
func foldEq(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
