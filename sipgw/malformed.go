package sipgw

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
)

// Request validation in front of sipgo's parser (RFC 3261 8.2, 16.3,
// 18.3). sipgo drops whatever it cannot parse without a word, so a
// client that sent a malformed request retransmits until its timers
// give up. Here every message is looked at once, without allocating,
// before sipgo sees it: a request that is malformed but still says
// where its answer goes gets that answer (400 with the reason, or 505,
// 416, 420, 513); what cannot be answered is dropped; everything else
// goes on to sipgo untouched. guard.go puts this on the sockets.

// maxMessage bounds a message on a stream, as sipgo's parser does
// (sip.ParseMaxMessageLength).
const maxMessage = 65535

type verdictKind uint8

const (
	pass   verdictKind = iota // hand the message to sipgo
	answer                    // answer it here, do not hand it on
	drop                      // neither
)

// verdict is what to do with one message. Reason phrases are constants:
// nothing of the peer's bytes is echoed in them.
type verdict struct {
	kind   verdictKind
	code   int
	reason string
	// close: on a stream, the message boundary is lost, so after the
	// answer (if any) the connection goes.
	close bool
}

func reject(code int, reason string) verdict {
	return verdict{kind: answer, code: code, reason: reason}
}

// Fields the check looks at: those a response copies (RFC 3261 8.2.6.2)
// and those a request must carry at most once.
const (
	fVia = iota
	fFrom
	fTo
	fCallID
	fCSeq
	fContentLength
	fMaxForwards
	fRequire
	nFields
)

var fieldNames = [nFields]string{"Via", "From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards", "Require"}

// fieldOf classifies a header field name, long or compact form.
func fieldOf(name []byte) int {
	switch len(name) {
	case 1:
		switch name[0] | 0x20 {
		case 'v':
			return fVia
		case 'f':
			return fFrom
		case 't':
			return fTo
		case 'i':
			return fCallID
		case 'l':
			return fContentLength
		}
	case 2:
		if foldEq(name, "to") {
			return fTo
		}
	case 3:
		if foldEq(name, "via") {
			return fVia
		}
	case 4:
		if foldEq(name, "from") {
			return fFrom
		}
		if foldEq(name, "cseq") {
			return fCSeq
		}
	case 7:
		if foldEq(name, "call-id") {
			return fCallID
		}
		if foldEq(name, "require") {
			return fRequire
		}
	case 12:
		if foldEq(name, "max-forwards") {
			return fMaxForwards
		}
	case 14:
		if foldEq(name, "content-length") {
			return fContentLength
		}
	}
	return -1
}

// span is a range of the message: msg[off:end].
type span struct{ off, end int }

func (s span) of(msg []byte) []byte { return msg[s.off:s.end] }

// head is what one pass over a message's start line and header fields
// found. The zero value is ready for parse.
type head struct {
	response   bool // a status line: never answered
	notRequest bool // neither request nor response: garbage
	method     span
	uri        span
	version    span
	badVersion bool // well formed, but not SIP/2.0
	body       int  // offset of the body; -1 when the header section is unterminated
	clen       int  // Content-Length; -1 when absent or unusable
	fields     [nFields]span
	counts     [nFields]uint8 // saturating
	syntax     verdict        // first syntax error in the start line or a field line
}

// fieldIter iterates over the header field lines of a message whose start
// line ends at pos, unfolding nothing: a value keeps its CRLF WSP.
type fieldIter struct {
	msg []byte
	pos int
}

type lineStatus uint8

const (
	lineOK lineStatus = iota
	lineEmpty
	lineUnterminated
	lineBadEnding // CR without LF
)

// next returns the next field line: name and value trimmed of LWS, or a
// status saying why there is none. colon is false for a line with no ':'.
func (it *fieldIter) next() (name, value span, colon bool, st lineStatus) {
	end, nxt, st := lineAt(it.msg, it.pos)
	if st != lineOK {
		return
	}
	if end == it.pos {
		it.pos = nxt
		return name, value, false, lineEmpty
	}
	start := it.pos
	for nxt < len(it.msg) && (it.msg[nxt] == ' ' || it.msg[nxt] == '\t') {
		e, n, s := lineAt(it.msg, nxt)
		if s != lineOK {
			return name, value, false, s
		}
		end, nxt = e, n
	}
	it.pos = nxt
	i := bytes.IndexByte(it.msg[start:end], ':')
	if i < 0 {
		return span{start, end}, span{end, end}, false, lineOK
	}
	name = trimLWS(it.msg, span{start, start + i})
	value = trimLWS(it.msg, span{start + i + 1, end})
	return name, value, true, lineOK
}

// lineAt finds the CRLF ending the line that starts at pos.
func lineAt(msg []byte, pos int) (end, next int, st lineStatus) {
	i := bytes.IndexByte(msg[pos:], '\r')
	if i < 0 {
		return len(msg), len(msg), lineUnterminated
	}
	i += pos
	if i+1 >= len(msg) {
		return i, len(msg), lineUnterminated
	}
	if msg[i+1] != '\n' {
		return i, i + 1, lineBadEnding
	}
	return i, i + 2, lineOK
}

// parse reads the start line and header fields of msg, which starts at
// the message's first byte. On a stream msg ends after the empty line.
func (h *head) parse(msg []byte) {
	h.body, h.clen = -1, -1
	end, nxt, st := lineAt(msg, 0)
	if st != lineOK || end == 0 {
		h.notRequest = true
		return
	}
	line := msg[:end]
	if len(line) >= 4 && foldEq(line[:4], "sip/") {
		h.response = true
	} else if !h.parseRequestLine(line) {
		return
	}
	it := fieldIter{msg: msg, pos: nxt}
	for {
		name, value, colon, st := it.next()
		switch st {
		case lineEmpty:
			h.body = it.pos
			h.contentLength(msg)
			return
		case lineUnterminated:
			h.fail(reject(400, "Bad Request (unterminated header section)"))
			return
		case lineBadEnding:
			h.fail(reject(400, "Bad Request (line not ended by CRLF)"))
			return
		}
		n := name.of(msg)
		if !colon || !isToken(n) {
			h.fail(reject(400, "Bad Request (malformed header field)"))
			continue
		}
		f := fieldOf(n)
		if f < 0 {
			continue
		}
		if h.counts[f] == 0 {
			h.fields[f] = value
		}
		if h.counts[f] < 255 {
			h.counts[f]++
		}
	}
}

// parseRequestLine: Method SP Request-URI SP SIP-Version, single spaces
// (RFC 3261 7.1; RFC 4475 3.1.2.7-9 lwsruri, lwsstart, trws). It reports
// whether line is a request at all: one that does not even start with
// a method is garbage.
func (h *head) parseRequestLine(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		h.notRequest = true
		return false
	}
	h.method = span{0, sp}
	rest := sp + 1
	sp2 := bytes.IndexByte(line[rest:], ' ')
	if sp2 <= 0 {
		h.fail(reject(400, "Bad Request (malformed Request-Line)"))
		return true
	}
	h.uri = span{rest, rest + sp2}
	h.version = span{rest + sp2 + 1, len(line)}
	v := line[h.version.off:]
	if !validVersion(v) {
		h.fail(reject(400, "Bad Request (malformed Request-Line)"))
		return true
	}
	h.badVersion = !foldEq(v, "sip/2.0")
	return true
}

func validVersion(v []byte) bool {
	if len(v) < 7 || !foldEq(v[:4], "sip/") {
		return false
	}
	dot := bytes.IndexByte(v[4:], '.')
	return dot > 0 && isDigits(v[4:4+dot]) && isDigits(v[5+dot:])
}

func (h *head) fail(v verdict) {
	if h.syntax.kind == pass {
		h.syntax = v
	}
}

// contentLength reads the one Content-Length; more than one, or one
// that is not a number, leaves clen -1 for judge to report.
func (h *head) contentLength(msg []byte) {
	if h.counts[fContentLength] != 1 {
		return
	}
	v := h.fields[fContentLength].of(msg)
	if n, ok := atoi(v); ok {
		h.clen = n
	}
}

// judge decides what to do with a message that parse read. size is
// the datagram's length, or -1 on a stream, where the body follows the
// header section as Content-Length says.
func (h *head) judge(msg []byte, size int) verdict {
	switch {
	case h.notRequest:
		// Garbage has no one to answer. (sipgo would drop it too, after
		// logging it whole as an error.)
		return verdict{kind: drop, close: size < 0}
	case h.response:
		// A UA never answers a response (RFC 3261 18.1.2): sipgo
		// matches it or drops it. On a stream it needs its length.
		if size < 0 && h.clen < 0 {
			return verdict{kind: drop, close: true}
		}
		return verdict{kind: pass}
	}
	v := h.problem(msg, size)
	if v.kind == pass {
		return v
	}
	if !h.answerable(msg) {
		return verdict{kind: drop, close: v.close}
	}
	return v
}

// problem is the first thing wrong with a request, in the order of RFC
// 3261 8.2: framing and syntax (400), then version (505), URI scheme
// (416) and extensions (420).
func (h *head) problem(msg []byte, size int) verdict {
	if v := h.framing(size); v.kind != pass {
		return v
	}
	if h.syntax.kind != pass {
		return h.syntax
	}
	var missing []string
	for _, f := range [...]int{fFrom, fTo, fCallID, fCSeq, fVia} {
		if h.counts[f] == 0 {
			missing = append(missing, fieldNames[f])
		}
	}
	if missing != nil {
		return reject(400, "Bad Request (missing "+strings.Join(missing, ", ")+")")
	}
	for _, f := range [...]int{fFrom, fTo, fCallID, fCSeq, fMaxForwards} {
		if h.counts[f] > 1 {
			return reject(400, "Bad Request (more than one "+fieldNames[f]+")")
		}
	}
	if h.fields[fCallID].off == h.fields[fCallID].end {
		return reject(400, "Bad Request (empty Call-ID)")
	}
	method := h.method.of(msg)
	num, cseqMethod, ok := parseCSeq(h.fields[fCSeq].of(msg))
	switch {
	case !ok:
		return reject(400, "Bad Request (malformed CSeq)")
	case num > 1<<31-1: // RFC 3261 8.1.1.5; RFC 4475 3.1.2.4 scalar02
		return reject(400, "Bad Request (CSeq number out of range)")
	case !bytes.Equal(cseqMethod, method): // RFC 4475 3.1.2.16-17
		return reject(400, "Bad Request (CSeq method does not match the Request-Line)")
	}
	if h.counts[fMaxForwards] == 1 && !isDigits(h.fields[fMaxForwards].of(msg)) {
		return reject(400, "Bad Request (malformed Max-Forwards)")
	}
	if via := parseVia(msg, h.fields[fVia]); !via.ok || via.bad {
		return reject(400, "Bad Request (malformed Via)")
	}
	if _, ok := checkAddr(h.fields[fFrom].of(msg)); !ok {
		return reject(400, "Bad Request (malformed From)")
	}
	if _, ok := checkAddr(h.fields[fTo].of(msg)); !ok {
		return reject(400, "Bad Request (malformed To)")
	}
	if h.badVersion {
		return reject(505, "Version Not Supported")
	}
	uri := h.uri.of(msg)
	scheme, ok := schemeOf(uri)
	switch {
	case !ok:
		return reject(400, "Bad Request (malformed Request-URI)")
	case !foldEq(scheme, "sip") && !foldEq(scheme, "sips") && !foldEq(scheme, "tel"):
		return reject(416, "Unsupported URI Scheme")
	case hasHeaders(uri) && !foldEq(scheme, "tel"):
		// Headers are not allowed in a Request-URI (RFC 3261 19.1.5;
		// RFC 4475 3.1.2.11 escruri).
		return reject(400, "Bad Request (headers in the Request-URI)")
	}
	if h.counts[fRequire] > 0 && string(method) != "ACK" && string(method) != "CANCEL" {
		switch tags, ok := unsupported(msg); {
		case !ok:
			return reject(400, "Bad Request (malformed Require)")
		case tags != "":
			return reject(420, "Bad Extension")
		}
	}
	return verdict{kind: pass}
}

// framing checks Content-Length (RFC 3261 18.3, 20.14): one value, a
// number, and on a datagram no more than what arrived (RFC 4475
// 3.1.2.2-3 clerr, ncl; 3.3.9 mcl01). On a stream a bad length loses
// the message boundary.
func (h *head) framing(size int) verdict {
	stream := size < 0
	var v verdict
	switch {
	case h.body < 0:
		return v // unterminated: a syntax error
	case h.counts[fContentLength] > 1:
		v = reject(400, "Bad Request (more than one Content-Length)")
	case h.counts[fContentLength] == 1 && h.clen < 0:
		v = reject(400, "Bad Request (malformed Content-Length)")
	case stream && h.counts[fContentLength] == 0:
		v = reject(400, "Bad Request (missing Content-Length)")
	case stream && h.body+h.clen > maxMessage:
		v = reject(513, "Message Too Large")
	case !stream && h.body >= 0 && h.clen > size-h.body:
		v = reject(400, "Bad Request (Content-Length exceeds the datagram)")
	default:
		return v
	}
	v.close = stream
	return v
}

// answerable: the answer has somewhere to go and something to match
// (RFC 3261 8.2.6, 18.2.2): a top Via with a sent-by, and a CSeq with a
// method. An ACK is never answered (RFC 3261 17.2.1).
func (h *head) answerable(msg []byte) bool {
	if h.counts[fVia] == 0 || h.counts[fCSeq] == 0 || string(h.method.of(msg)) == "ACK" {
		return false
	}
	if _, _, ok := parseCSeq(h.fields[fCSeq].of(msg)); !ok {
		return false
	}
	return parseVia(msg, h.fields[fVia]).ok
}

// unsupported lists the option tags of the Require fields that we do
// not support (RFC 3261 8.2.2.3), comma separated; "" when none. ok is
// false when a tag is not a token.
func unsupported(msg []byte) (tags string, ok bool) {
	var out []string
	ok = true
	eachField(msg, func(name, value []byte) {
		if fieldOf(name) != fRequire {
			return
		}
		for tag := range bytes.SplitSeq(value, []byte(",")) {
			tag = bytes.TrimFunc(tag, func(r rune) bool { return r < 0x80 && isLWS(byte(r)) })
			switch {
			case len(tag) == 0: // "a, , b": tolerated
			case !isToken(tag):
				ok = false
			case !isSupported(tag):
				out = append(out, string(tag))
			}
		}
	})
	return strings.Join(out, ", "), ok
}

func isSupported(tag []byte) bool {
	// The option tags a Require may name (RFC 3261 8.2.2.3): those we
	// advertise.
	for s := range strings.SplitSeq(supported(true, true), ", ") {
		if foldEq(tag, s) {
			return true
		}
	}
	return false
}

// eachField calls f for each header field of msg, in order.
func eachField(msg []byte, f func(name, value []byte)) {
	_, nxt, st := lineAt(msg, 0)
	if st != lineOK {
		return
	}
	it := fieldIter{msg: msg, pos: nxt}
	for {
		name, value, colon, st := it.next()
		if st != lineOK {
			return
		}
		if colon {
			f(name.of(msg), value.of(msg))
		}
	}
}

// appendAnswer appends the response to the request in msg: the status
// line, Via fields as received (the top one with received and rport,
// RFC 3261 18.2.1 and RFC 3581), From, To with a tag, Call-ID and CSeq
// (RFC 3261 8.2.6.2), Unsupported for a 420.
func appendAnswer(dst, msg []byte, h *head, v verdict, src netip.AddrPort) []byte {
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(v.code), 10)
	dst = append(dst, ' ')
	dst = append(dst, v.reason...)
	dst = append(dst, "\r\n"...)
	top := true
	eachField(msg, func(name, value []byte) {
		if fieldOf(name) != fVia {
			return
		}
		dst = append(dst, "Via: "...)
		if !top {
			dst = appendUnfolded(dst, value)
			dst = append(dst, "\r\n"...)
			return
		}
		top = false
		off := h.fields[fVia].off
		hop := parseVia(msg, h.fields[fVia])
		if !hop.ok || hop.bad || !src.IsValid() {
			dst = appendUnfolded(dst, value)
			dst = append(dst, "\r\n"...)
			return
		}
		end := hop.end - off
		if hop.rport > 0 {
			// RFC 3581 4: rport gets the source port, and received is
			// added even when it repeats the sent-by.
			dst = appendUnfolded(dst, value[:hop.rport-off])
			dst = append(dst, '=')
			dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
			dst = appendUnfolded(dst, value[hop.rport-off:end])
		} else {
			dst = appendUnfolded(dst, value[:end])
		}
		if hop.rport > 0 || !bytes.Equal(hop.host.of(msg), []byte(src.Addr().String())) {
			dst = append(dst, ";received="...)
			dst = append(dst, src.Addr().String()...)
		}
		dst = appendUnfolded(dst, value[end:])
		dst = append(dst, "\r\n"...)
	})
	for _, f := range [...]int{fFrom, fTo, fCallID, fCSeq} {
		if h.counts[f] == 0 {
			continue
		}
		dst = append(dst, fieldNames[f]...)
		dst = append(dst, ": "...)
		value := h.fields[f].of(msg)
		dst = appendUnfolded(dst, value)
		if f == fTo {
			if tag, ok := checkAddr(value); !tag && ok {
				dst = append(dst, ";tag="...)
				dst = append(dst, randHex(8)...)
			}
		}
		dst = append(dst, "\r\n"...)
	}
	if v.code == 420 {
		dst = append(dst, "Unsupported: "...)
		tags, _ := unsupported(msg)
		dst = append(dst, tags...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// appendUnfolded copies a field value with its line folds turned into
// spaces.
func appendUnfolded(dst, v []byte) []byte {
	for _, c := range v {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}
