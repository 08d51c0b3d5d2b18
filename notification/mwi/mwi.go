// Package mwi reads and writes message summaries,
// application/simple-message-summary bodies (RFC 3842 section 5), and
// maps them to the JSON payload of the message_notification package
// (docs/protocol.md §7.2):
//
//	{"messages_waiting":"yes","message_account":"sip:bob@example.com","voice-message":"2/8 (0/2)"}
//
// Each message class of RFC 3458 (voice-message, fax-message, ...) is a
// key whose value is "new/old (urgent new/urgent old)". The urgent part
// is optional in RFC 3842 but wsc.js requires the "(", so [Summary.Payload]
// always writes it.
//
// Start with [Parse] (a SIP NOTIFY body to a [Summary]) and
// [Summary.Payload]; [ParsePayload] and [Summary.Marshal] go the other
// way. Parsing is bounded ([MaxSize]) and never panics.
package mwi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ContentType is the media type of a message summary.
const ContentType = "application/simple-message-summary"

// Bounds.
const (
	// MaxSize bounds a body Parse accepts.
	MaxSize = 16 << 10
	// MaxAccount bounds the Message-Account URI.
	MaxAccount = 256
	// MaxCount bounds each counter.
	MaxCount = 999999999
)

var (
	// ErrTooLarge is returned for a body over MaxSize.
	ErrTooLarge = errors.New("mwi: body too large")
	// ErrMalformed wraps every other reason a body or payload is refused.
	ErrMalformed = errors.New("mwi: malformed message summary")
)

// Classes are the message-context-class values of RFC 3458 section 4.2,
// in the order Marshal and Payload write them.
var classes = [...]string{"voice-message", "fax-message", "pager-message", "multimedia-message", "text-message", "none"}

func classIndex(name string) int {
	for i, c := range classes {
		if strings.EqualFold(c, name) {
			return i
		}
	}
	return -1
}

// Counts are the message counts of one class.
type Counts struct {
	New, Old, UrgentNew, UrgentOld int
}

// Class is the summary line of one message class.
type Class struct {
	// Name is the class in lower case, e.g. "voice-message".
	Name string
	Counts
}

// Summary is one message summary.
type Summary struct {
	Waiting bool
	// Account is the Message-Account URI, or "".
	Account string
	// Classes are in RFC 3458 order, each at most once.
	Classes []Class
}

// Parse reads a simple-message-summary body (RFC 3842 section 5.2). Line
// ends may be CRLF or LF; folded lines are joined. Lines of unknown
// headers are ignored, as are the optional message headers after the
// first empty line. It refuses bodies over MaxSize (ErrTooLarge), and
// bodies without a valid Messages-Waiting line, with a malformed known
// line or a repeated one (errors wrapping ErrMalformed).
func Parse(body []byte) (Summary, error) {
	var s Summary
	if len(body) > MaxSize {
		return s, ErrTooLarge
	}
	if !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 {
		return s, fmt.Errorf("%w: not UTF-8 text", ErrMalformed)
	}
	lines := strings.Split(string(body), "\n")
	var joined []string
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			break // the optional message headers follow
		}
		if l[0] == ' ' || l[0] == '\t' {
			if len(joined) == 0 {
				return s, fmt.Errorf("%w: starts with a continuation line", ErrMalformed)
			}
			joined[len(joined)-1] += " " + strings.TrimSpace(l)
			continue
		}
		joined = append(joined, l)
	}
	var sawStatus, sawAccount bool
	var seen [len(classes)]bool
	var found [len(classes)]*Counts
	for _, l := range joined {
		name, value, ok := strings.Cut(l, ":")
		name = strings.TrimRight(name, " \t")
		if !ok || !isToken(name) {
			return s, fmt.Errorf("%w: line %q is not a header", ErrMalformed, short(l))
		}
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Messages-Waiting"):
			if sawStatus {
				return s, fmt.Errorf("%w: Messages-Waiting repeated", ErrMalformed)
			}
			sawStatus = true
			w, err := parseWaiting(value)
			if err != nil {
				return s, err
			}
			s.Waiting = w
		case strings.EqualFold(name, "Message-Account"):
			if sawAccount {
				return s, fmt.Errorf("%w: Message-Account repeated", ErrMalformed)
			}
			sawAccount = true
			if err := checkAccount(value); err != nil {
				return s, err
			}
			s.Account = value
		default:
			i := classIndex(name)
			if i < 0 {
				continue // an extension: RFC 3842 lets new headers appear
			}
			if seen[i] {
				return s, fmt.Errorf("%w: %s repeated", ErrMalformed, classes[i])
			}
			seen[i] = true
			c, err := ParseCounts(value)
			if err != nil {
				return s, err
			}
			found[i] = &c
		}
	}
	if !sawStatus {
		return s, fmt.Errorf("%w: no Messages-Waiting line", ErrMalformed)
	}
	for i, c := range found {
		if c != nil {
			s.Classes = append(s.Classes, Class{Name: classes[i], Counts: *c})
		}
	}
	return s, nil
}

func parseWaiting(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("%w: messages waiting %q is neither yes nor no", ErrMalformed, short(v))
}

// ParseCounts reads "new/old" or "new/old (urgent new/urgent old)",
// with optional white space around each part.
func ParseCounts(v string) (Counts, error) {
	var c Counts
	p := counter{s: v}
	ok := p.num(&c.New) && p.lit('/') && p.num(&c.Old)
	if ok && p.more() {
		ok = p.lit('(') && p.num(&c.UrgentNew) && p.lit('/') && p.num(&c.UrgentOld) && p.lit(')')
	}
	if !ok || p.more() {
		return Counts{}, fmt.Errorf("%w: counts %q are not new/old (urgent new/urgent old)", ErrMalformed, short(v))
	}
	return c, nil
}

// counter scans a counts value.
type counter struct {
	s string
	i int
}

func (p *counter) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *counter) more() bool { p.space(); return p.i < len(p.s) }

func (p *counter) lit(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *counter) num(n *int) bool {
	p.space()
	start := p.i
	v := 0
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		if p.i-start == 9 {
			return false // over MaxCount
		}
		v = v*10 + int(p.s[p.i]-'0')
		p.i++
	}
	*n = v
	return p.i > start
}

// String writes c as "new/old (urgent new/urgent old)".
func (c Counts) String() string {
	return fmt.Sprintf("%d/%d (%d/%d)", c.New, c.Old, c.UrgentNew, c.UrgentOld)
}

// Marshal writes s as a simple-message-summary body with CRLF line ends.
func (s Summary) Marshal() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("Messages-Waiting: ")
	b.WriteString(yesNo(s.Waiting))
	b.WriteString("\r\n")
	if s.Account != "" {
		b.WriteString("Message-Account: " + s.Account + "\r\n")
	}
	for _, c := range s.Classes {
		b.WriteString(headerName(c.Name) + ": " + c.Counts.String() + "\r\n")
	}
	return []byte(b.String()), nil
}

// Payload returns s as a message_notification payload. s must be valid,
// as Parse and ParsePayload return it; an invalid s gives nil.
func (s Summary) Payload() json.RawMessage {
	if s.validate() != nil {
		return nil
	}
	var b bytes.Buffer
	b.WriteString(`{"messages_waiting":"` + yesNo(s.Waiting) + `"`)
	if s.Account != "" {
		acc, _ := json.Marshal(s.Account)
		b.WriteString(`,"message_account":`)
		b.Write(acc)
	}
	for _, c := range s.Classes {
		b.WriteString(`,"` + c.Name + `":"` + c.Counts.String() + `"`)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// ParsePayload reads a message_notification payload. messages_waiting is
// required; keys that are not message classes are ignored; a class
// value must be a string of counts.
func ParsePayload(raw json.RawMessage) (Summary, error) {
	var s Summary
	if len(raw) > MaxSize {
		return s, ErrTooLarge
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return s, fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	str := func(k string) (string, bool, error) {
		v, ok := m[k]
		if !ok {
			return "", false, nil
		}
		var x string
		if err := json.Unmarshal(v, &x); err != nil {
			return "", true, fmt.Errorf("%w: %s is not a string", ErrMalformed, k)
		}
		return x, true, nil
	}
	w, ok, err := str("messages_waiting")
	if err != nil {
		return s, err
	}
	if !ok {
		return s, fmt.Errorf("%w: messages_waiting is missing", ErrMalformed)
	}
	if s.Waiting, err = parseWaiting(strings.TrimSpace(w)); err != nil {
		return s, err
	}
	if acc, ok, err := str("message_account"); err != nil {
		return s, err
	} else if ok {
		if err := checkAccount(acc); err != nil {
			return s, err
		}
		s.Account = acc
	}
	for _, name := range classes {
		v, ok, err := str(name)
		if err != nil {
			return s, err
		}
		if !ok {
			continue
		}
		c, err := ParseCounts(v)
		if err != nil {
			return s, err
		}
		s.Classes = append(s.Classes, Class{Name: name, Counts: c})
	}
	return s, nil
}

func (s Summary) validate() error {
	if s.Account != "" {
		if err := checkAccount(s.Account); err != nil {
			return err
		}
	}
	last := -1
	for _, c := range s.Classes {
		i := classIndex(c.Name)
		if i < 0 || c.Name != classes[i] {
			return fmt.Errorf("%w: unknown message class %q", ErrMalformed, short(c.Name))
		}
		if i <= last {
			return fmt.Errorf("%w: classes repeated or out of order", ErrMalformed)
		}
		last = i
		for _, n := range []int{c.New, c.Old, c.UrgentNew, c.UrgentOld} {
			if n < 0 || n > MaxCount {
				return fmt.Errorf("%w: count %d out of range", ErrMalformed, n)
			}
		}
	}
	return nil
}

// checkAccount accepts an absolute URI of printable ASCII without space
// (RFC 3842's Account-URI), so that it can go into a SIP body or a
// header unchanged.
func checkAccount(v string) error {
	if v == "" || len(v) > MaxAccount {
		return fmt.Errorf("%w: message account is empty or too long", ErrMalformed)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f || v[i] == '<' || v[i] == '>' || v[i] == '"' {
			return fmt.Errorf("%w: message account %q is not a URI", ErrMalformed, short(v))
		}
	}
	i := strings.IndexByte(v, ':')
	if i <= 0 || !isScheme(v[:i]) {
		return fmt.Errorf("%w: message account %q has no scheme", ErrMalformed, short(v))
	}
	return nil
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// isToken reports whether s is a header name (RFC 3261 token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// headerName writes a class as RFC 3842 does: "Voice-Message".
func headerName(class string) string {
	b := []byte(class)
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '-'
	}
	return string(b)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func short(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.ToValidUTF8(s, "?")
}
