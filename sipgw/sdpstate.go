package sipgw

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// The offer/answer state of a dialog (RFC 3264): the SDP we last sent
// and the SDP we last got, so that a re-INVITE without SDP (a session
// refresh, or a peer that wants our offer: RFC 3261 section 14.2, RFC
// 4028) is answered by the gateway alone with our current description,
// and the answer in its ACK is compared with what the peer had.

// noteLocal records sdp as the description we sent last.
func (c *Call) noteLocal(sdp []byte) {
	if len(sdp) == 0 {
		return
	}
	c.mu.Lock()
	c.localSDP = sdp
	c.mu.Unlock()
	c.changed()
}

// noteRemote records sdp as the peer's description.
func (c *Call) noteRemote(sdp []byte) {
	if len(sdp) == 0 {
		return
	}
	c.mu.Lock()
	c.remoteSDP = sdp
	c.mu.Unlock()
	c.changed()
}

// answerLateOffer answers a re-INVITE without SDP with our current
// description, unchanged (its o= version too: nothing changed on our
// side, RFC 3264 section 8), and waits for the answer in the ACK. False
// when there is no description to offer yet.
func (c *Call) answerLateOffer(req *sip.Request, tx sip.ServerTransaction) bool {
	c.mu.Lock()
	local := c.localSDP
	if len(local) > 0 {
		c.lateOffer = true
	}
	c.mu.Unlock()
	if len(local) == 0 {
		return false
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	setSDP(res, local)
	st := c.timerAnswer(req, res) // a refresh (RFC 4028): timer.go
	ct := c.g.dua.ContactHDR
	res.AppendHeader(&ct)
	if err := tx.Respond(res); err != nil {
		c.mu.Lock()
		c.lateOffer = false
		c.mu.Unlock()
		c.g.log.Debug("sipgw: answer to a re-INVITE without SDP failed", "call", c.id, "err", err)
		return true
	}
	c.noteTarget(req)
	c.deliver(func() { c.armTimer(st) })
	return true
}

// lateAnswer takes the SDP of an ACK: when it answers the offer we made
// in a 200 to a re-INVITE without SDP and the peer's session changed, it
// is the peer's new description, returned; nil otherwise (a plain
// refresh, or an ACK of any other 2xx).
func (c *Call) lateAnswer(body []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.lateOffer {
		return nil
	}
	c.lateOffer = false
	if len(body) == 0 || sameSession(c.remoteSDP, body) {
		return nil
	}
	c.remoteSDP = body
	c.changed() // under c.mu: it never blocks
	return body
}

// sameSession says whether two descriptions are one version of one
// session: the same o= line (RFC 3264 section 8: a changed description
// has a higher version), or the same bytes.
func sameSession(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	oa, ob := originLine(a), originLine(b)
	return oa != "" && oa == ob
}

func originLine(sdp []byte) string {
	for _, l := range strings.Split(string(sdp), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "o=") {
			return l
		}
	}
	return ""
}
