package call

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jsonrtc/jsonrtc/protocol"
	sdp "github.com/pion/sdp/v3"
)

// SDP at the web/SIP boundary. An offer or answer that does not parse
// is useless to the other side and, sent on, fails far from its cause
// (a SIP peer answers 400 or 488, or a browser throws in
// setRemoteDescription). So every SDP that crosses between the web and
// SIP goes through pion/sdp here, once per offer or answer (call setup,
// never per frame): what fails stops with 488 Not Acceptable Here (RFC
// 3261 section 21.4.26) and a reason that names the problem.
//
// protocol.HasSDP stays the cheap "is there an SDP at all" test; which
// message needs a well-formed one is this package's knowledge.

// maxSDPReason bounds how much of an SDP error goes into a reason.
const maxSDPReason = 160

// parseSDP parses s as a session description (RFC 8866), or says why it
// is none.
func parseSDP(s string) (*sdp.SessionDescription, error) {
	if !protocol.HasSDP(s) {
		return nil, errors.New("no SDP")
	}
	// pion's lexer needs the line end after an a= line but not after a
	// v=, m= or c= one; RFC 8866 wants it after every line, and peers
	// that drop the last one mean nothing else by it.
	if s[len(s)-1] != '\n' {
		s += "\r\n"
	}
	d := new(sdp.SessionDescription)
	if err := d.UnmarshalString(s); err != nil {
		return nil, fmt.Errorf("%s%s", err, lineOf(s, err))
	}
	// pion stops without complaint where the input does: the lines RFC
	// 8866 section 5 requires, and an m= line's format list, are checked
	// here.
	switch {
	case d.Origin.NetworkType == "":
		return nil, errors.New("no o= line")
	case len(d.TimeDescriptions) == 0:
		return nil, errors.New("no t= line")
	}
	for i, m := range d.MediaDescriptions {
		if len(m.MediaName.Formats) == 0 {
			return nil, fmt.Errorf("m= line %d has no formats", i+1)
		}
	}
	return d, nil
}

// lineOf names the line a pion syntax error points at ("at pos N"), or
// is empty.
func lineOf(s string, err error) string {
	_, after, ok := strings.Cut(err.Error(), " at pos ")
	if !ok {
		return ""
	}
	num, _, _ := strings.Cut(after, ":")
	pos, aerr := strconv.Atoi(num)
	if aerr != nil || pos < 0 || pos >= len(s) {
		return ""
	}
	start := strings.LastIndexByte(s[:pos], '\n') + 1
	end := strings.IndexAny(s[pos:], "\r\n")
	if end < 0 {
		end = len(s) - pos
	}
	return fmt.Sprintf(" (line %d: %+q)", strings.Count(s[:start], "\n")+1, s[start:pos+end])
}

// sdpReason is the reason of a 488 for an SDP that did not parse.
func sdpReason(err error) string {
	r := "SDP does not parse: " + err.Error()
	if len(r) > maxSDPReason {
		r = r[:maxSDPReason]
	}
	return r
}

// iceUfrag is the ICE username fragment of d: session-level, else that
// of the first media section with one (RFC 8839 section 5.4). Its change
// marks a new ICE generation.
func iceUfrag(d *sdp.SessionDescription) string {
	if v, ok := d.Attribute("ice-ufrag"); ok {
		return v
	}
	for _, m := range d.MediaDescriptions {
		if v, ok := m.Attribute("ice-ufrag"); ok {
			return v
		}
	}
	return ""
}

// mediaMid is the mid of m (RFC 8843), or "".
func mediaMid(m *sdp.MediaDescription) string {
	v, _ := m.Attribute("mid")
	return v
}
