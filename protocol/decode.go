package protocol

import (
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits applied while decoding. They bound the work one frame can cause,
// whatever the transport's frame size limit is.
const (
	MaxExtHeaders   = 32   // extension headers in one frame
	MaxExtValueLen  = 1024 // bytes in one extension header value
	MaxExtNameLen   = 64
	maxNestingDepth = 32
)

// Decode parses one frame. It never panics; malformed input yields an
// *Error with code 400 whose reason names the offending field.
//
// Payload, Authenticate and Authorization alias data; callers that keep
// the frame beyond the life of data must not reuse data.
func Decode(data []byte) (*Frame, error) {
	f := new(Frame)
	if err := DecodeInto(f, data); err != nil {
		return nil, err
	}
	return f, nil
}

// DecodeInto parses data into f, which it resets first.
func DecodeInto(f *Frame, data []byte) error {
	*f = Frame{Header: Header{Ext: f.Header.Ext[:0]}}
	s := scanner{data: data}
	s.ws()
	if s.peek() != '{' {
		return newError(CodeBadRequest, "frame is not a JSON object")
	}
	sawControl := false
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "control":
			sawControl = true
			if s.peek() != '{' {
				return newError(CodeBadRequest, "control is not an object")
			}
			return s.object(func(k []byte) error { return s.controlField(&f.Control, k) })
		case "header":
			if s.peek() == 'n' {
				return s.null("header")
			}
			if s.peek() != '{' {
				return newError(CodeBadRequest, "header is not an object")
			}
			return s.object(func(k []byte) error { return s.headerField(&f.Header, k) })
		case "payload":
			if s.peek() == 'n' {
				return s.null("payload")
			}
			if s.peek() != '{' {
				return newError(CodeBadRequest, "payload is not an object")
			}
			start := s.pos
			if err := s.skip(0); err != nil {
				return err
			}
			f.Payload = json.RawMessage(s.data[start:s.pos])
			return nil
		default:
			return s.skip(0)
		}
	})
	if err != nil {
		return err
	}
	s.ws()
	if s.pos != len(s.data) {
		return newError(CodeBadRequest, "trailing data after the frame")
	}
	if !sawControl {
		return newError(CodeBadRequest, "control is missing")
	}
	if len(f.Header.Ext) == 0 {
		f.Header.Ext = nil
	}
	return nil
}

func (s *scanner) controlField(c *Control, key []byte) error {
	var err error
	switch string(key) {
	case "type":
		var v string
		v, err = s.known("control.type")
		c.Type = Type(v)
	case "package_type":
		var v string
		v, err = s.known("control.package_type")
		c.Package = Package(v)
	case "session_id":
		c.SessionID, err = s.str("control.session_id")
	case "subsession_id":
		c.SubsessionID, err = s.str("control.subsession_id")
	case "sequence":
		c.Sequence, err = s.seqOrNull("control.sequence")
	case "ack_sequence":
		c.AckSequence, err = s.seqOrNull("control.ack_sequence")
	case "message_state":
		var v string
		v, err = s.known("control.message_state")
		c.MessageState = MessageState(v)
	case "correlation_id":
		c.CorrelationID, err = s.str("control.correlation_id")
	case "version":
		c.Version, err = s.known("control.version")
	default:
		err = s.skip(0)
	}
	return err
}

func (s *scanner) headerField(h *Header, key []byte) error {
	var err error
	switch string(key) {
	case "action":
		var v string
		v, err = s.known("header.action")
		h.Action = Action(v)
	case "initiator":
		h.Initiator, err = s.str("header.initiator")
	case "target":
		h.Target, err = s.str("header.target")
	case "response_code":
		h.ResponseCode, err = s.code("header.response_code")
	case "error_code":
		h.ErrorCode, err = s.code("header.error_code")
	case "reason":
		h.Reason, err = s.str("header.reason")
	case "cslr":
		h.CSLR, err = s.optSeq("header.cslr")
	case "cslw":
		h.CSLW, err = s.optSeq("header.cslw")
	case "csuw":
		h.CSUW, err = s.optSeq("header.csuw")
	case "sslr":
		h.SSLR, err = s.optSeq("header.sslr")
	case "expiry":
		var n uint64
		n, err = s.uint("header.expiry")
		if err == nil && n > 1<<31 {
			err = newError(CodeBadRequest, "header.expiry is out of range")
		}
		h.Expiry = int(n)
	case "refer_to":
		h.ReferTo, err = s.str("header.refer_to")
	case "replaces":
		h.Replaces, err = s.str("header.replaces")
	case "authenticate":
		h.Authenticate, err = s.rawObject("header.authenticate")
	case "authorization":
		h.Authorization, err = s.rawObject("header.authorization")
	default:
		err = s.ext(h, key)
	}
	return err
}

// ext decodes an extension header and applies the rules of docs/protocol.md
// §2.4: a safe name, a scalar value, no control characters.
func (s *scanner) ext(h *Header, key []byte) error {
	if !validExtName(key) {
		return newError(CodeBadRequest, "extension header name "+quoteTrunc(key)+" is not allowed")
	}
	if len(h.Ext) >= MaxExtHeaders {
		return newError(CodeBadRequest, "too many extension headers")
	}
	e := Ext{Name: string(key)}
	switch c := s.peek(); {
	case c == '"':
		v, err := s.str("header." + e.Name)
		if err != nil {
			return err
		}
		if len(v) > MaxExtValueLen {
			return newError(CodeBadRequest, "header."+e.Name+" is too long")
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] == 0x7f {
				return newError(CodeBadRequest, "header."+e.Name+" contains a control character")
			}
		}
		e.Kind, e.Value = ExtString, v
	case c == 't' || c == 'f':
		start := s.pos
		if err := s.skip(0); err != nil {
			return err
		}
		e.Kind, e.Value = ExtBool, string(s.data[start:s.pos])
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.pos
		if err := s.number(); err != nil {
			return err
		}
		if s.pos-start > 32 {
			return newError(CodeBadRequest, "header."+e.Name+" is too long")
		}
		e.Kind, e.Value = ExtNumber, string(s.data[start:s.pos])
	default:
		return newError(CodeBadRequest, "header."+e.Name+" must be a string, number or boolean")
	}
	h.Ext = append(h.Ext, e)
	return nil
}

func validExtName(b []byte) bool {
	if len(b) == 0 || len(b) > MaxExtNameLen {
		return false
	}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func quoteTrunc(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return strconv.QuoteToASCII(string(b))
}

// scanner is a minimal JSON reader over one frame. It validates what it
// skips, so a raw payload it hands out is always well-formed JSON.
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

var errSyntax = newError(CodeBadRequest, "malformed JSON")

// object reads an object, calling field for each key with the scanner
// positioned at the value; field must consume the value.
func (s *scanner) object(field func(key []byte) error) error {
	s.ws()
	if s.peek() != '{' {
		return errSyntax
	}
	s.pos++
	s.ws()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		s.ws()
		key, err := s.rawString()
		if err != nil {
			return err
		}
		s.ws()
		if s.peek() != ':' {
			return errSyntax
		}
		s.pos++
		s.ws()
		if err := field(key); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return errSyntax
		}
	}
}

// rawString reads a string and returns its unescaped bytes. The slice
// aliases data when there are no escapes.
func (s *scanner) rawString() ([]byte, error) {
	if s.peek() != '"' {
		return nil, errSyntax
	}
	s.pos++
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			b := s.data[start:s.pos]
			s.pos++
			if !utf8.Valid(b) {
				return nil, newError(CodeBadRequest, "invalid UTF-8 in a string")
			}
			return b, nil
		case c == '\\':
			return s.escapedString(start)
		case c < 0x20:
			return nil, errSyntax
		}
		s.pos++
	}
	return nil, errSyntax
}

func (s *scanner) escapedString(start int) ([]byte, error) {
	out := make([]byte, 0, s.pos-start+16)
	out = append(out, s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			if !utf8.Valid(out) {
				return nil, newError(CodeBadRequest, "invalid UTF-8 in a string")
			}
			return out, nil
		case c < 0x20:
			return nil, errSyntax
		case c != '\\':
			out = append(out, c)
			s.pos++
			continue
		}
		s.pos++
		if s.pos >= len(s.data) {
			return nil, errSyntax
		}
		e := s.data[s.pos]
		s.pos++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, errSyntax
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					save := s.pos
					s.pos += 2
					var ok2 bool
					if r2, ok2 = s.hex4(); !ok2 {
						return nil, errSyntax
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						out = utf8.AppendRune(out, d)
						continue
					}
					s.pos = save
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, errSyntax
		}
	}
	return nil, errSyntax
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	s.pos += 4
	return r, true
}

func (s *scanner) str(field string) (string, error) {
	if s.peek() != '"' {
		if err := s.skip(0); err != nil {
			return "", err
		}
		return "", newError(CodeBadRequest, field+" must be a string")
	}
	b, err := s.rawString()
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// known reads a string that is usually one of the protocol's constants,
// returning the constant itself so that decoding it allocates nothing.
func (s *scanner) known(field string) (string, error) {
	if s.peek() != '"' {
		return s.str(field)
	}
	b, err := s.rawString()
	if err != nil {
		return "", err
	}
	if v, ok := internTable[string(b)]; ok {
		return v, nil
	}
	return string(b), nil
}

// internTable maps each constant to itself; it is never written after
// initialisation.
var internTable = func() map[string]string {
	m := map[string]string{}
	for _, v := range []string{"request", "response", "message", "acknowledgement", "error",
		"register", "call", "presence", "message_notification", "messaging",
		"connect", "start", "complete", "prack", "shutdown", "trickle", "dtmf", "transfer", "notify", "publish", "send",
		"initial", "subsequent", "final", Version} {
		m[v] = v
	}
	return m
}()

func (s *scanner) null(field string) error {
	if len(s.data)-s.pos >= 4 && string(s.data[s.pos:s.pos+4]) == "null" {
		s.pos += 4
		return nil
	}
	return newError(CodeBadRequest, field+" is malformed")
}

// uint reads a non-negative integer that fits in 53 bits, the range a
// JavaScript peer can represent exactly.
func (s *scanner) uint(field string) (uint64, error) {
	start := s.pos
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		if err := s.skip(0); err != nil {
			return 0, err
		}
		return 0, newError(CodeBadRequest, field+" must be a number")
	}
	if err := s.number(); err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(string(s.data[start:s.pos]), 10, 53)
	if err != nil {
		return 0, newError(CodeBadRequest, field+" must be a non-negative integer")
	}
	return n, nil
}

func (s *scanner) seqOrNull(field string) (uint64, error) {
	if s.peek() == 'n' {
		return 0, s.null(field)
	}
	return s.uint(field)
}

func (s *scanner) code(field string) (int, error) {
	n, err := s.uint(field)
	if err != nil {
		return 0, err
	}
	if n < 100 || n > 699 {
		return 0, newError(CodeBadRequest, field+" is out of range")
	}
	return int(n), nil
}

func (s *scanner) optSeq(field string) (OptSeq, error) {
	if s.peek() == 'n' {
		return OptSeq{Present: true, Null: true}, s.null(field)
	}
	n, err := s.uint(field)
	return OptSeq{Present: true, V: n}, err
}

func (s *scanner) rawObject(field string) (json.RawMessage, error) {
	if s.peek() != '{' {
		if err := s.skip(0); err != nil {
			return nil, err
		}
		return nil, newError(CodeBadRequest, field+" must be an object")
	}
	start := s.pos
	if err := s.skip(0); err != nil {
		return nil, err
	}
	return json.RawMessage(s.data[start:s.pos]), nil
}

// skip consumes and validates one value.
func (s *scanner) skip(depth int) error {
	if depth > maxNestingDepth {
		return newError(CodeBadRequest, "JSON nested too deeply")
	}
	s.ws()
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip(depth + 1) })
	case c == '[':
		s.pos++
		s.ws()
		if s.peek() == ']' {
			s.pos++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.pos++
			case ']':
				s.pos++
				return nil
			default:
				return errSyntax
			}
		}
	case c == '"':
		_, err := s.rawString()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return errSyntax
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return nil
	}
	return errSyntax
}

// number consumes a JSON number, enforcing the grammar of RFC 8259.
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case c >= '1' && c <= '9':
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
		}
	default:
		return errSyntax
	}
	if s.peek() == '.' {
		s.pos++
		if !s.digits() {
			return errSyntax
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if !s.digits() {
			return errSyntax
		}
	}
	return nil
}

func (s *scanner) digits() bool {
	start := s.pos
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
	}
	return s.pos > start
}
