// Package pidf reads and writes presence documents, application/pidf+xml
// (RFC 3863), with the RPID activities of RFC 4480 in a data-model person
// element (RFC 4479), and maps them to the JSON payload of the presence
// package (docs/protocol.md §6): {"presentity","status","activity","note"}.
//
// Start with [Parse] (a SIP NOTIFY or PUBLISH body to a payload) and
// [Marshal] (a payload to a body). [Validate] checks a payload a web
// client sent. Parsing is bounded ([MaxSize]) and never panics; what
// Parse returns always passes Validate and marshals again.
//
// The mapping, both ways:
//   - presentity: the presence entity attribute, without the "pres:"
//     scheme that RFC 3863 section 4.1.1 uses; a presentity without a
//     scheme is written as "pres:<presentity>".
//   - status: "open" when any tuple's status/basic is open (RFC 3863
//     section 4.1.4), else "closed", also when there is no tuple.
//   - activity: the first RPID activity (RFC 4480 section 3.2); an
//     activity that is not one of RFC 4480's tokens travels as
//     <rpid:other>text</rpid:other>.
//   - note: the first note of the presence element, else of a person,
//     else of a tuple.
package pidf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// ContentType is the media type of a PIDF body.
const ContentType = "application/pidf+xml"

// XML namespaces.
const (
	NamespacePIDF      = "urn:ietf:params:xml:ns:pidf"
	NamespaceRPID      = "urn:ietf:params:xml:ns:pidf:rpid"
	NamespaceDataModel = "urn:ietf:params:xml:ns:pidf:data-model"
)

// Bounds on documents and payloads.
const (
	// MaxSize bounds a document Parse accepts.
	MaxSize = 64 << 10
	// MaxPresentity bounds the presentity (as header addresses are).
	MaxPresentity = 256
	// MaxActivity bounds the activity.
	MaxActivity = 64
	// MaxNote bounds the note, in bytes.
	MaxNote = 1024
)

// Status values.
const (
	StatusOpen   = "open"
	StatusClosed = "closed"
)

var (
	// ErrTooLarge is returned for a document over MaxSize.
	ErrTooLarge = errors.New("pidf: document too large")
	// ErrMalformed wraps every other reason a document is refused.
	ErrMalformed = errors.New("pidf: malformed document")
)

// activities are RFC 4480's activity tokens (section 3.2), which travel
// as empty elements.
func isActivityToken(s string) bool {
	switch s {
	case "appointment", "away", "breakfast", "busy", "dinner", "holiday",
		"in-transit", "looking-for-work", "meal", "meeting", "on-the-phone",
		"performance", "permanent-absence", "playing", "presentation",
		"shopping", "sleeping", "spectator", "steering", "travel", "tv",
		"unknown", "vacation", "working", "worship":
		return true
	}
	return false
}

// Documents as read. Every element is matched with its namespace.
type inPresence struct {
	XMLName xml.Name   `xml:"urn:ietf:params:xml:ns:pidf presence"`
	Entity  string     `xml:"entity,attr"`
	Tuples  []inTuple  `xml:"urn:ietf:params:xml:ns:pidf tuple"`
	Persons []inPerson `xml:"urn:ietf:params:xml:ns:pidf:data-model person"`
	Notes   []string   `xml:"urn:ietf:params:xml:ns:pidf note"`
}

type inTuple struct {
	Status inStatus `xml:"urn:ietf:params:xml:ns:pidf status"`
	Notes  []string `xml:"urn:ietf:params:xml:ns:pidf note"`
}

type inStatus struct {
	Basic []string `xml:"urn:ietf:params:xml:ns:pidf basic"`
	// Early RPID implementations put activities in the status.
	Activities []inActivities `xml:"urn:ietf:params:xml:ns:pidf:rpid activities"`
}

type inPerson struct {
	Activities []inActivities `xml:"urn:ietf:params:xml:ns:pidf:rpid activities"`
	Notes      []string       `xml:"urn:ietf:params:xml:ns:pidf:data-model note"`
}

type inActivities struct {
	Items []inElement `xml:",any"`
}

type inElement struct {
	XMLName xml.Name
	Text    string `xml:",chardata"`
}

// Documents as written: children without a namespace in their tag
// inherit their parent's default namespace.
type outPresence struct {
	XMLName xml.Name   `xml:"urn:ietf:params:xml:ns:pidf presence"`
	Entity  string     `xml:"entity,attr"`
	Tuple   outTuple   `xml:"tuple"`
	Person  *outPerson `xml:"urn:ietf:params:xml:ns:pidf:data-model person"`
	Note    string     `xml:"note,omitempty"`
}

type outTuple struct {
	ID    string `xml:"id,attr"`
	Basic string `xml:"status>basic"`
}

type outPerson struct {
	ID         string        `xml:"id,attr"`
	Activities outActivities `xml:"urn:ietf:params:xml:ns:pidf:rpid activities"`
}

type outActivities struct {
	Items []inElement
}

// Parse reads a PIDF document into a presence payload. It refuses
// documents over MaxSize (ErrTooLarge) and anything that is not a
// well-formed PIDF presence element in UTF-8 (an error wrapping
// ErrMalformed). Text is cleaned to fit the payload's bounds: control
// characters become spaces, long notes are cut.
func Parse(data []byte) (protocol.PresencePayload, error) {
	var out protocol.PresencePayload
	if len(data) > MaxSize {
		return out, ErrTooLarge
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	// No CharsetReader: a document in another charset is refused. No
	// entities beyond XML's five: nothing expands.
	var p inPresence
	if err := d.Decode(&p); err != nil {
		return out, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Nothing but comments, processing instructions and white space may
	// follow the root element.
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return out, fmt.Errorf("%w: content after the presence element", ErrMalformed)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return out, fmt.Errorf("%w: content after the presence element", ErrMalformed)
			}
		}
	}
	entity := strings.TrimSpace(p.Entity)
	if entity == "" {
		return out, fmt.Errorf("%w: presence has no entity", ErrMalformed)
	}
	if rest, ok := cutScheme(entity, "pres"); ok {
		entity = rest
	}
	if err := checkAddress(entity); err != nil {
		return out, fmt.Errorf("%w: entity: %v", ErrMalformed, err)
	}
	out.Presentity = entity
	out.Status = StatusClosed
	var acts []inActivities
	for _, t := range p.Tuples {
		for _, b := range t.Status.Basic {
			switch strings.TrimSpace(b) {
			case StatusOpen:
				out.Status = StatusOpen
			case StatusClosed:
			default:
				return out, fmt.Errorf("%w: basic status %q is neither open nor closed", ErrMalformed, truncate(b, 32))
			}
		}
		acts = append(acts, t.Status.Activities...)
	}
	notes := p.Notes
	for _, pe := range p.Persons {
		acts = append(pe.Activities, acts...)
		notes = append(notes, pe.Notes...)
	}
	for _, t := range p.Tuples {
		notes = append(notes, t.Notes...)
	}
	// Person activities come first, then those in tuples.
	out.Activity = firstActivity(acts)
	for _, n := range notes {
		if n = clean(n, MaxNote); n != "" {
			out.Note = n
			break
		}
	}
	return out, nil
}

func firstActivity(acts []inActivities) string {
	for _, a := range acts {
		for _, it := range a.Items {
			if it.XMLName.Space != NamespaceRPID {
				continue
			}
			var s string
			if it.XMLName.Local == "other" {
				s = clean(it.Text, MaxActivity)
			} else {
				s = clean(it.XMLName.Local, MaxActivity)
			}
			if s != "" {
				return s
			}
		}
	}
	return ""
}

// Marshal writes p as a PIDF document. p must pass Validate and name its
// presentity.
func Marshal(p protocol.PresencePayload) ([]byte, error) {
	if err := Validate(p); err != nil {
		return nil, err
	}
	if p.Presentity == "" {
		return nil, errors.New("pidf: presentity is missing")
	}
	if p.Status == "" {
		return nil, errors.New("pidf: status is missing")
	}
	entity := p.Presentity
	if !hasScheme(entity) {
		entity = "pres:" + entity
	}
	doc := outPresence{
		Entity: entity,
		Tuple:  outTuple{ID: "t1", Basic: p.Status},
		Note:   p.Note,
	}
	if p.Activity != "" {
		// The encoder writes an element without a namespace as
		// xmlns="", so each activity names RPID's again.
		el := inElement{XMLName: xml.Name{Space: NamespaceRPID, Local: p.Activity}}
		if !isActivityToken(p.Activity) {
			el = inElement{XMLName: xml.Name{Space: NamespaceRPID, Local: "other"}, Text: p.Activity}
		}
		doc.Person = &outPerson{ID: "p1", Activities: outActivities{Items: []inElement{el}}}
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	if err := xml.NewEncoder(&b).Encode(doc); err != nil {
		return nil, fmt.Errorf("pidf: %w", err)
	}
	return b.Bytes(), nil
}

// Validate checks a payload from a web client: status, when present,
// is open or closed; presentity, activity and note are within bounds,
// valid UTF-8 and free of control characters. Empty fields are allowed:
// callers decide which they require.
func Validate(p protocol.PresencePayload) error {
	switch p.Status {
	case "", StatusOpen, StatusClosed:
	default:
		return errors.New("status must be open or closed")
	}
	if p.Presentity != "" {
		if err := checkAddress(p.Presentity); err != nil {
			return fmt.Errorf("presentity: %w", err)
		}
	}
	if err := checkText(p.Activity, MaxActivity); err != nil {
		return fmt.Errorf("activity: %w", err)
	}
	if p.Activity != strings.TrimSpace(p.Activity) {
		return errors.New("activity: has surrounding space")
	}
	if err := checkText(p.Note, MaxNote); err != nil {
		return fmt.Errorf("note: %w", err)
	}
	return nil
}

func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || !isXMLChar(r) {
			return errors.New("has a control character")
		}
	}
	return nil
}

func checkAddress(s string) error {
	if err := checkText(s, MaxPresentity); err != nil {
		return err
	}
	if s == "" || strings.ContainsAny(s, " <>\"") {
		return errors.New("not an address")
	}
	return nil
}

// isXMLChar reports whether r may appear in an XML 1.0 document.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// clean makes text from a document fit a payload: control characters
// become spaces, surrounding space goes, and it is cut to max bytes on a
// rune boundary.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !isXMLChar(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	s = truncate(s, max)
	return strings.TrimSpace(s)
}

func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// hasScheme reports whether s starts with a URI scheme ("sip:", "tel:").
func hasScheme(s string) bool {
	i := strings.IndexByte(s, ':')
	if i <= 0 {
		return false
	}
	for j := 0; j < i; j++ {
		c := s[j]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func cutScheme(s, scheme string) (string, bool) {
	if len(s) > len(scheme) && s[len(scheme)] == ':' && strings.EqualFold(s[:len(scheme)], scheme) {
		return s[len(scheme)+1:], true
	}
	return s, false
}
