package call

import (
	"strings"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Trickle ICE on SIP calls (PROTOCOL.md section 6).
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

// webTrickle: a trickle message from the web side. c.mu is held.
func (fl *farLeg) webTrickle(l *leg, f *protocol.Frame) {
	if l != fl.web() {
		// A forked callee still ringing: its candidates matter once it
		// answers (adoptTrickle).
		if !fl.out && l.state == legRinging && len(l.trickle) < maxBufferedTrickle {
			l.trickle = append(l.trickle, f.Payload)
		}
		return
	}
	var p protocol.CallPayload
	if protocol.DecodePayload(f.Payload, &p) != nil {
		return
	}
	fl.addTrickle(p.Candidates)
	fl.flushTrickle()
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

func (fl *farLeg) addTrickle(frag string) {
	lines := fragmentLines(frag)
	if len(lines) == 0 {
		return
	}
	if len(fl.trickle) == 0 {
		fl.trickleUfrag = sdpAttr(fl.localSDP, "ice-ufrag")
	}
	for _, line := range lines {
		if fl.trickleBytes+len(line) > maxPendingTrickle {
			fl.h.log.Info("ICE candidates toward SIP dropped: too many pending", "lines", len(lines))
			return
		}
		fl.trickleBytes += len(line) + 2
		fl.trickle = append(fl.trickle, line)
	}
}

// setLocalSDP records the SDP the web side gave SIP last; a new ICE
// generation makes the waiting candidates useless.
func (fl *farLeg) setLocalSDP(sdp string) {
	fl.localSDP = sdp
	if len(fl.trickle) > 0 && sdpAttr(sdp, "ice-ufrag") != fl.trickleUfrag {
		fl.dropTrickle("ICE restarted")
	}
}

func (fl *farLeg) dropTrickle(why string) {
	fl.h.log.Debug("ICE candidates toward SIP dropped", "why", why, "lines", len(fl.trickle))
	fl.trickle, fl.trickleBytes = nil, 0
}

// flushTrickle sends the waiting candidates in one INFO, when the peer
// takes them and the dialog allows it. c.mu is held.
func (fl *farLeg) flushTrickle() {
	if len(fl.trickle) == 0 || !fl.confirmed || fl.sc == nil || !fl.sc.PeerAccepts(sipgw.InfoPackageTrickleICE) {
		return
	}
	body := []byte(sdpfrag(fl.localSDP, fl.trickle))
	fl.trickle, fl.trickleBytes = nil, 0
	sc, log := fl.sc, fl.h.log
	if !fl.enqueue(func() {
		ctx, cancel := opCtx()
		defer cancel()
		err := sc.SendInfo(ctx, sipgw.Info{Package: sipgw.InfoPackageTrickleICE, ContentType: sipgw.ContentTypeTrickleICE, Body: body})
		if err != nil {
			log.Info("trickle INFO failed", "call", sc.ID(), "err", err)
		}
	}) {
		log.Info("ICE candidates toward SIP dropped: too many pending requests", "call", sc.ID())
	}
}

// foldTrickle adds the waiting candidates to offer, the web side's next
// offer toward a peer that takes no INFO. c.mu is held.
func (fl *farLeg) foldTrickle(offer string) string {
	if len(fl.trickle) == 0 || fl.sc == nil || fl.sc.PeerAccepts(sipgw.InfoPackageTrickleICE) {
		return offer
	}
	if sdpAttr(offer, "ice-ufrag") != fl.trickleUfrag {
		fl.dropTrickle("ICE restarted")
		return offer
	}
	out := foldCandidates(offer, fl.trickle)
	fl.trickle, fl.trickleBytes = nil, 0
	return out
}

// sipTrickle hands an RFC 8840 INFO body to the web leg w. c.mu is held.
func (fl *farLeg) sipTrickle(w *leg, body []byte) {
	frag := webFragment(string(body))
	if frag == "" {
		return
	}
	out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionTrickle, "")
	out.Header.Initiator, out.Header.Target = fl.remoteName(), w.ep.Identity()
	out.Payload = protocol.EncodePayload(protocol.CallPayload{Candidates: frag})
	fl.h.send(w, out, false)
}

// fragmentLines normalises a web trickle fragment to its a=mid,
// a=candidate and a=end-of-candidates lines. wsc.js-era clients
// concatenate browsers' candidate strings, which lack the a= prefix and
// the line end: those are split and prefixed.
func fragmentLines(frag string) []string {
	var out []string
	for _, raw := range strings.FieldsFunc(frag, func(r rune) bool { return r == '\r' || r == '\n' }) {
		for _, line := range splitCandidates(strings.TrimSpace(raw)) {
			switch {
			case strings.HasPrefix(line, "candidate:"):
				out = append(out, "a="+line)
			case strings.HasPrefix(line, "a=candidate:"), line == "a=end-of-candidates":
				out = append(out, line)
			case strings.HasPrefix(line, "a=mid:") && len(line) > len("a=mid:"):
				out = append(out, line)
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

// sdpLines splits an SDP (or fragment) into lines without their ends.
func sdpLines(sdp string) []string {
	return strings.FieldsFunc(sdp, func(r rune) bool { return r == '\r' || r == '\n' })
}

// sdpAttr is the value of the first a=<name>: line of sdp.
func sdpAttr(sdp, name string) string {
	prefix := "a=" + name + ":"
	for _, l := range sdpLines(sdp) {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(l[len(prefix):])
		}
	}
	return ""
}

// media is one m= section of an SDP: its m= line, mid, and the ICE
// credentials it carries.
type media struct {
	mline, mid string
	ice        []string // a=ice-ufrag, a=ice-pwd
}

// parseMedia returns the session-level ICE credential lines and the media
// sections of sdp.
func parseMedia(sdp string) (session []string, ms []media) {
	for _, l := range sdpLines(sdp) {
		switch {
		case strings.HasPrefix(l, "m="):
			ms = append(ms, media{mline: l})
		case strings.HasPrefix(l, "a=ice-ufrag:"), strings.HasPrefix(l, "a=ice-pwd:"):
			if len(ms) == 0 {
				session = append(session, l)
			} else {
				ms[len(ms)-1].ice = append(ms[len(ms)-1].ice, l)
			}
		case strings.HasPrefix(l, "a=mid:") && len(ms) > 0:
			ms[len(ms)-1].mid = l[len("a=mid:"):]
		}
	}
	return session, ms
}

// byMid groups fragment lines by their a=mid, in order of first mention.
// Lines before any a=mid go under "".
func byMid(lines []string) (mids []string, group map[string][]string) {
	group = map[string][]string{}
	mid := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "a=mid:") {
			mid = l[len("a=mid:"):]
			if _, ok := group[mid]; !ok {
				mids = append(mids, mid)
				group[mid] = nil
			}
			continue
		}
		if _, ok := group[mid]; !ok {
			mids = append(mids, mid)
		}
		if l == "a=end-of-candidates" && contains(group[mid], l) {
			continue
		}
		group[mid] = append(group[mid], l)
	}
	return mids, group
}

func contains(lines []string, l string) bool {
	for _, x := range lines {
		if x == l {
			return true
		}
	}
	return false
}

// sdpfrag builds the application/trickle-ice-sdpfrag body of RFC 8840
// (section 9.2) for the web candidate lines: the ICE credentials of the
// web side's SDP, which tell the peer the ICE generation, then for each
// mid the m= line of that SDP, a=mid, and its candidates.
func sdpfrag(local string, lines []string) string {
	session, ms := parseMedia(local)
	var b strings.Builder
	for _, l := range session {
		b.WriteString(l + "\r\n")
	}
	mids, group := byMid(lines)
	for _, mid := range mids {
		if mid != "" {
			for _, m := range ms {
				if m.mid == mid {
					b.WriteString(m.mline + "\r\n")
					for _, l := range m.ice {
						b.WriteString(l + "\r\n")
					}
					break
				}
			}
			b.WriteString("a=mid:" + mid + "\r\n")
		}
		for _, l := range group[mid] {
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

// webFragment turns an RFC 8840 body into the web trickle format: per
// mid an a=mid line, its candidates and a=end-of-candidates. Sections
// without a mid cannot be placed and are left out; a session-level
// a=end-of-candidates ends every mid of the body.
func webFragment(body string) string {
	var mids []string
	group := map[string][]string{}
	mid, inMedia, endAll := "", false, false
	for _, l := range sdpLines(body) {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "m="):
			mid, inMedia = "", true
		case strings.HasPrefix(l, "a=mid:") && len(l) > len("a=mid:"):
			mid = l[len("a=mid:"):]
			if _, ok := group[mid]; !ok {
				mids = append(mids, mid)
				group[mid] = nil
			}
		case l == "a=end-of-candidates" && !inMedia:
			endAll = true
		case strings.HasPrefix(l, "a=candidate:"), l == "a=end-of-candidates":
			if mid != "" {
				group[mid] = append(group[mid], l)
			}
		}
	}
	var b strings.Builder
	for _, m := range mids {
		lines := group[m]
		if endAll && !contains(lines, "a=end-of-candidates") {
			lines = append(lines, "a=end-of-candidates")
		}
		if len(lines) == 0 {
			continue
		}
		b.WriteString("a=mid:" + m + "\r\n")
		for _, l := range lines {
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

// foldCandidates adds candidate lines to the media sections of sdp they
// belong to (by mid), leaving out those it already has.
func foldCandidates(sdp string, lines []string) string {
	_, group := byMid(lines)
	src := sdpLines(sdp)
	var b strings.Builder
	var section []string // the current m= section
	flush := func() {
		mid := ""
		for _, l := range section {
			if strings.HasPrefix(l, "a=mid:") {
				mid = l[len("a=mid:"):]
			}
		}
		for _, l := range section {
			b.WriteString(l + "\r\n")
		}
		if mid == "" {
			return
		}
		for _, l := range group[mid] {
			if !contains(section, l) {
				b.WriteString(l + "\r\n")
			}
		}
	}
	for _, l := range src {
		if strings.HasPrefix(l, "m=") {
			flush()
			section = section[:0]
		}
		if len(section) == 0 && !strings.HasPrefix(l, "m=") {
			b.WriteString(l + "\r\n")
			continue
		}
		section = append(section, l)
	}
	flush()
	return b.String()
}
