package call

import (
	"slices"
	"strings"

	sdp "github.com/pion/sdp/v3"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Trickle ICE on SIP calls (docs/protocol.md §5.10, §10.2).
//
// Web to SIP: a peer that announced the trickle-ice Info Package gets
// the web side's candidates in INFO (RFC 8840) once the INVITE dialog is
// confirmed; what arrives before waits in the far leg. A peer that did
// not announce it cannot take candidates outside an offer: they wait
// until the web side's next re-offer, and are added to that re-INVITE's
// SDP where the browser left them out. Candidates of an older ICE
// generation (the re-offer restarts ICE) and those still waiting when the
// call ends are dropped, with a debug log: a call whose SDP was complete
// needs none of them, and one that needed them has failed ICE already.
//
// SIP to web: an INFO application/trickle-ice-sdpfrag becomes a trickle
// message in the web format (a=mid, a=candidate, a=end-of-candidates
// lines), except toward wsc.js, which ignores trickle.

// maxPendingTrickle bounds the candidates a far leg keeps (bytes): a
// browser gathers a few dozen lines; past this, later ones are dropped,
// logged.
const maxPendingTrickle = 16 << 10

// bufferTrickle: a trickle message from a forked callee still ringing:
// its candidates matter once it answers (adoptTrickle). c.mu is held.
func (fl *farLeg) bufferTrickle(l *leg, f *protocol.Frame) {
	if len(l.trickle) < maxBufferedTrickle {
		l.trickle = append(l.trickle, f.Payload)
	}
}

// webTrickle: a trickle message from the web leg that talks with SIP.
// c.mu is held.
func (fl *farLeg) webTrickle(l *leg, f *protocol.Frame) {
	var p protocol.CallPayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		fl.h.send(l, errorFrame(f, protocol.CodeOf(err), protocol.ReasonOf(err)), false)
		return
	}
	if fl.anchored() {
		// rtpengine is the browser's ICE peer: the candidates go to
		// it, never to the phone (docs/media.md, "Trickle ICE").
		fl.mediaTrickle(l, f, p.Candidates)
		return
	}
	if !fl.addTrickle(p.Candidates) {
		fl.busy(l, f, opTrickle)
	}
	fl.flushTrickle()
}

// mediaTrickle passes the web side's trickled candidates of an anchored
// call to its rtpengine instance as an RFC 8840 fragment with the ICE
// credentials and m= lines of the web side's last SDP, on the worker: a
// slow or failed command never holds the call up, and rtpengine would
// still learn the candidates from the browser's checks (peer reflexive,
// RFC 8445 section 7.3.1.3). A failure is counted and logged; a full
// queue refuses the frame with 503, as toward SIP. c.mu is held.
func (fl *farLeg) mediaTrickle(l *leg, f *protocol.Frame, frag string) {
	attrs := fragmentAttrs(frag)
	if len(attrs) == 0 || fl.local == nil {
		return
	}
	body, s := string(fragment(fl.local, attrs, true)), fl.media
	if !fl.enqueue(func() {
		ctx, cancel := opCtx()
		defer cancel()
		if err := s.Trickle(ctx, body); err != nil {
			fl.mediaFailed("trickle", err)
		}
	}) {
		fl.busy(l, f, opTrickle)
	}
}

// adoptTrickle takes the candidates a callee sent before it won.
func (fl *farLeg) adoptTrickle(l *leg) {
	for _, raw := range l.trickle {
		var p protocol.CallPayload
		if protocol.DecodePayload(raw, &p) == nil {
			fl.addTrickle(p.Candidates)
		}
	}
	l.trickle = nil
}

// addTrickle keeps the candidates of frag for SIP; false when some were
// left out, past maxPendingTrickle.
func (fl *farLeg) addTrickle(frag string) bool {
	attrs := fragmentAttrs(frag)
	if len(attrs) == 0 || fl.anchored() {
		return true
	}
	if len(fl.trickle) == 0 {
		fl.trickleUfrag = fl.localUfrag()
	}
	for _, a := range attrs {
		n := attrLineLen(a)
		if fl.trickleBytes+n > maxPendingTrickle {
			fl.log().Debug("ICE candidates toward SIP dropped: too many pending", "lines", len(attrs))
			return false
		}
		fl.trickleBytes += n
		fl.trickle = append(fl.trickle, a)
	}
	return true
}

func (fl *farLeg) localUfrag() string {
	if fl.local == nil {
		return ""
	}
	return iceUfrag(fl.local)
}

// setLocalSDP records the SDP the web side gave SIP last (parsed by
// parseSDP); a new ICE generation makes the waiting candidates useless.
func (fl *farLeg) setLocalSDP(d *sdp.SessionDescription) {
	fl.local = d
	if len(fl.trickle) > 0 && iceUfrag(d) != fl.trickleUfrag {
		fl.dropTrickle("ICE restarted")
	}
}

func (fl *farLeg) dropTrickle(why string) {
	fl.log().Debug("ICE candidates toward SIP dropped", "why", why, "lines", len(fl.trickle))
	fl.trickle, fl.trickleBytes = nil, 0
}

// flushTrickle sends the waiting candidates in one INFO, when the peer
// takes them and the dialog allows it. c.mu is held.
func (fl *farLeg) flushTrickle() {
	if len(fl.trickle) == 0 || (fl.phase != outConfirmed && fl.phase != inConfirmed) || fl.sc == nil || !fl.sc.PeerAccepts(sipgw.InfoPackageTrickleICE) {
		return
	}
	body := sdpfrag(fl.local, fl.trickle)
	sc, log, rlog := fl.sc, fl.log(), fl.rlog()
	if !fl.enqueue(func() {
		ctx, cancel := opCtx()
		defer cancel()
		err := sc.SendInfo(ctx, sipgw.Info{Package: sipgw.InfoPackageTrickleICE, ContentType: sipgw.ContentTypeTrickleICE, Body: body})
		if err != nil {
			rlog.Info("trickle info", "trickle INFO failed", "err", err)
		}
	}) {
		// Kept for the next flush (or re-offer), within their bound.
		log.Debug("ICE candidates toward SIP wait: too many pending requests")
		return
	}
	fl.trickle, fl.trickleBytes = nil, 0
}

// foldTrickle adds the waiting candidates to offer (parsed as d), the
// web side's next offer toward a peer that takes no INFO, and returns
// the SDP to send. c.mu is held.
func (fl *farLeg) foldTrickle(offer string, d *sdp.SessionDescription) string {
	if len(fl.trickle) == 0 || fl.sc == nil || fl.sc.PeerAccepts(sipgw.InfoPackageTrickleICE) {
		return offer
	}
	if iceUfrag(d) != fl.trickleUfrag {
		fl.dropTrickle("ICE restarted")
		return offer
	}
	out, err := foldCandidates(d, fl.trickle)
	if err != nil {
		fl.dropTrickle("offer not marshalled: " + err.Error())
		return offer
	}
	fl.trickle, fl.trickleBytes = nil, 0
	return string(out)
}

// sipTrickle hands an RFC 8840 INFO body to the web leg w. c.mu is held.
func (fl *farLeg) sipTrickle(w *leg, body []byte) {
	frag, err := webFragment(body)
	if err != nil {
		fl.log().Debug("trickle INFO from SIP ignored", "err", err)
		return
	}
	if frag == "" {
		return
	}
	out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionTrickle, "")
	out.Header.Initiator, out.Header.Target = fl.remoteName(), w.ep.Identity()
	out.Payload = protocol.EncodePayload(protocol.CallPayload{Candidates: frag})
	fl.h.send(w, out, false)
}

// Attribute names of trickle ICE (RFC 8839 section 5.1 and 5.5, RFC
// 8843 section 5).
const (
	attrCandidate = "candidate"
	attrEnd       = "end-of-candidates"
	attrMid       = "mid"
)

// fragmentAttrs reads a web trickle fragment into its a=mid,
// a=candidate and a=end-of-candidates attributes. A web fragment is no
// SDP: its a=mid lines stand alone, with no m= line, and wsc.js-era
// clients concatenate browsers' candidate strings, which lack the a=
// prefix and the line end, so pion's session parser cannot read it;
// this reader knows those three attributes and drops every other line.
func fragmentAttrs(frag string) []sdp.Attribute {
	var out []sdp.Attribute
	for _, raw := range strings.FieldsFunc(frag, func(r rune) bool { return r == '\r' || r == '\n' }) {
		for _, line := range splitCandidates(strings.TrimSpace(raw)) {
			bare := strings.TrimPrefix(line, "a=")
			switch {
			case strings.HasPrefix(bare, attrCandidate+":") && len(bare) > len(attrCandidate)+1:
				out = append(out, sdp.NewAttribute(attrCandidate, bare[len(attrCandidate)+1:]))
			case line == "a="+attrEnd:
				out = append(out, sdp.NewPropertyAttribute(attrEnd))
			case strings.HasPrefix(line, "a="+attrMid+":") && len(bare) > len(attrMid)+1:
				out = append(out, sdp.NewAttribute(attrMid, bare[len(attrMid)+1:]))
			}
		}
	}
	return out
}

func splitCandidates(line string) []string {
	var out []string
	for {
		start := 0
		switch {
		case strings.HasPrefix(line, "a=candidate:"):
			start = len("a=candidate:")
		case strings.HasPrefix(line, "candidate:"):
			start = len("candidate:")
		default:
			return append(out, line)
		}
		i := strings.Index(line[start:], "candidate:")
		if i < 0 {
			return append(out, line)
		}
		j := start + i
		if j-2 >= start && line[j-2:j] == "a=" {
			j -= 2
		}
		out = append(out, strings.TrimSpace(line[:j]))
		line = strings.TrimSpace(line[j:])
	}
}

// attrLineLen is the length of a's a= line with its end.
func attrLineLen(a sdp.Attribute) int {
	n := len("a=") + len(a.Key) + len("\r\n")
	if a.Value != "" {
		n += 1 + len(a.Value)
	}
	return n
}

// byMid groups trickle attributes by the a=mid before them, in order of
// first mention; those before any a=mid go under "". A repeated
// a=end-of-candidates in one group is dropped.
func byMid(attrs []sdp.Attribute) (mids []string, group map[string][]sdp.Attribute) {
	group = map[string][]sdp.Attribute{}
	mid := ""
	for _, a := range attrs {
		if a.Key == attrMid {
			mid = a.Value
			if _, ok := group[mid]; !ok {
				mids = append(mids, mid)
				group[mid] = nil
			}
			continue
		}
		if _, ok := group[mid]; !ok {
			mids = append(mids, mid)
		}
		if a.Key == attrEnd && slices.Contains(group[mid], a) {
			continue
		}
		group[mid] = append(group[mid], a)
	}
	return mids, group
}

// mediaByMid is the media section of d with that mid, or nil.
func mediaByMid(d *sdp.SessionDescription, mid string) *sdp.MediaDescription {
	if d == nil {
		return nil
	}
	for _, m := range d.MediaDescriptions {
		if mediaMid(m) == mid {
			return m
		}
	}
	return nil
}

func isICECredential(a sdp.Attribute) bool { return a.Key == "ice-ufrag" || a.Key == "ice-pwd" }

// sdpfrag builds the application/trickle-ice-sdpfrag body of RFC 8840
// (section 9.2) for the web candidates: the ICE credentials of the web
// side's SDP local, which tell the peer the ICE generation, then for
// each mid the m= line of that SDP (with its own credentials), a=mid,
// and its candidates. A fragment has no v=, o=, s= or t= line, which
// pion's Marshal always writes: its lines are pion's attribute and media
// name forms, joined here.
func sdpfrag(local *sdp.SessionDescription, attrs []sdp.Attribute) []byte {
	return fragment(local, attrs, false)
}

// fragment is sdpfrag; with perMedia, a media section without its own
// ICE credentials gets the session's under its m= line: rtpengine (10.5)
// takes a fragment's candidates only for media with credentials there
// (TestRTPEngineTrickle), and Firefox gives them at session level.
func fragment(local *sdp.SessionDescription, attrs []sdp.Attribute, perMedia bool) []byte {
	var b strings.Builder
	var session []sdp.Attribute
	line := func(typ, value string) {
		b.WriteString(typ)
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	if local != nil {
		for _, a := range local.Attributes {
			if isICECredential(a) {
				line("a=", a.String())
				session = append(session, a)
			}
		}
	}
	mids, group := byMid(attrs)
	for _, mid := range mids {
		if mid != "" {
			if m := mediaByMid(local, mid); m != nil {
				line("m=", m.MediaName.String())
				own := false
				for _, a := range m.Attributes {
					if isICECredential(a) {
						line("a=", a.String())
						own = true
					}
				}
				for _, a := range session {
					if perMedia && !own {
						line("a=", a.String())
					}
				}
			}
			line("a=", sdp.NewAttribute(attrMid, mid).String())
		}
		for _, a := range group[mid] {
			line("a=", a.String())
		}
	}
	return []byte(b.String())
}

// fragHeader makes an RFC 8840 body a session description: the sdpfrag
// format (RFC 8841) is an SDP without its session-level v=, o=, s= and
// t= lines, so with them in front pion parses the rest by the SDP
// grammar, media sections and attributes included, and a body that is
// no fragment fails as an SDP would.
const fragHeader = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"

// webFragment turns an RFC 8840 body into the web trickle format: per
// mid an a=mid line, its candidates and a=end-of-candidates. Sections
// without a mid cannot be placed and are left out; a session-level
// a=end-of-candidates ends every mid of the body.
func webFragment(body []byte) (string, error) {
	d, err := parseSDP(fragHeader + string(body))
	if err != nil {
		return "", err
	}
	_, endAll := d.Attribute(attrEnd)
	var mids []string
	group := map[string][]sdp.Attribute{}
	for _, m := range d.MediaDescriptions {
		mid := mediaMid(m)
		if mid == "" {
			continue
		}
		if _, ok := group[mid]; !ok {
			mids = append(mids, mid)
			group[mid] = nil
		}
		for _, a := range m.Attributes {
			if a.Key == attrCandidate || a.Key == attrEnd {
				group[mid] = append(group[mid], a)
			}
		}
	}
	var b strings.Builder
	end := sdp.NewPropertyAttribute(attrEnd)
	for _, mid := range mids {
		attrs := group[mid]
		if endAll && !slices.Contains(attrs, end) {
			attrs = append(attrs, end)
		}
		if len(attrs) == 0 {
			continue
		}
		b.WriteString("a=" + sdp.NewAttribute(attrMid, mid).String() + "\r\n")
		for _, a := range attrs {
			b.WriteString("a=" + a.String() + "\r\n")
		}
	}
	return b.String(), nil
}

// foldCandidates adds candidate attributes to the media sections of d
// they belong to (by mid), leaving out those a section already has, and
// marshals d. d is changed.
func foldCandidates(d *sdp.SessionDescription, attrs []sdp.Attribute) ([]byte, error) {
	_, group := byMid(attrs)
	for _, m := range d.MediaDescriptions {
		mid := mediaMid(m)
		if mid == "" {
			continue
		}
		for _, a := range group[mid] {
			if !slices.Contains(m.Attributes, a) {
				m.Attributes = append(m.Attributes, a)
			}
		}
	}
	return d.Marshal()
}
