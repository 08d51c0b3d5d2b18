package sipgw

import (
	"context"
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/jsonrtc/jsonrtc/routing"
)

// UPDATE (RFC 3311): in an early or confirmed dialog, with an SDP offer
// (relayed to the web side as a re-offer, EventReoffer, whose answer is
// the 200) or without a body (a session refresh, RFC 4028, answered by
// the gateway alone).

// update sends an UPDATE without a body, with the headers hs, and waits
// for its final response. The caller checked the call is confirmed.
func (c *Call) update(ctx context.Context, hs []sip.Header) (*sip.Response, error) {
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	req := sip.NewRequest(sip.UPDATE, c.remoteTarget())
	c.g.setSupported(req, true, c.trickles())
	for _, h := range hs {
		req.AppendHeader(h)
	}
	ct := c.g.dialogContact(c.identity, c.g.dua.ContactHDR)
	req.AppendHeader(&ct)
	res, err := c.request(ctx, req, nil)
	if err == nil && res.IsSuccess() {
		c.noteTarget(res)
	}
	return res, err
}

// handleUpdate runs on the sipgo goroutine of an UPDATE in one of our
// dialogs and returns once it is answered.
func (c *Call) handleUpdate(req *sip.Request, tx sip.ServerTransaction) {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == stateEnded {
		c.g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	if c.g.refuseShortTimer(req, tx) {
		return
	}
	if c.uas != nil {
		if err := c.uas.ReadRequest(req, tx); err != nil {
			c.g.respond(tx, req, 500, "Server Internal Error")
			return
		}
	}
	if len(req.Body()) > 0 && c.declared(req, tx) {
		return
	}
	if len(req.Body()) == 0 && st == stateInviting {
		// Nothing to refresh before the answer: the timer starts then.
		c.g.respond(tx, req, 200, "OK")
		return
	}
	if len(req.Body()) == 0 {
		// A refresh: RFC 4028 §9, answered here.
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		timer := c.timerAnswer(req, res)
		ct := c.g.dialogContact(c.identity, c.g.dua.ContactHDR)
		res.AppendHeader(&ct)
		if err := tx.Respond(res); err == nil {
			c.noteTarget(req)
			c.deliver(func() { c.armTimer(timer) })
		}
		return
	}
	if !c.takeOffer() {
		// RFC 3311 5.2: an offer while another is pending either way.
		c.g.respond(tx, req, 491, "Request Pending")
		return
	}
	defer c.offerDone()
	c.relayOffer(req, tx)
}

// takeOffer marks an offer from the peer pending; false when one is
// already pending, ours or theirs.
func (c *Call) takeOffer() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reinviteIn || c.reinviteOut {
		return false
	}
	c.reinviteIn = true
	return true
}

func (c *Call) offerDone() {
	c.mu.Lock()
	c.reinviteIn = false
	c.mu.Unlock()
}

// answerUnchanged answers an offer that repeats the peer's last SDP
// unchanged, the usual session refresh by re-INVITE (RFC 4028 §7.4), with
// the SDP the call runs on, without asking the web side; false when the
// offer is a new one.
func (c *Call) answerUnchanged(req *sip.Request, tx sip.ServerTransaction) bool {
	c.mu.Lock()
	local := c.localSDP
	same := len(local) > 0 && sameSession(c.remoteSDP, req.Body())
	c.mu.Unlock()
	if !same {
		return false
	}
	if req.Method == sip.INVITE {
		c.mu.Lock()
		c.quietAck = req.CSeq().SeqNo
		c.mu.Unlock()
	}
	ro := &Reoffer{c: c, req: req, tx: tx, done: make(chan struct{})}
	if err := ro.Accept(local); err == nil {
		c.deliver(func() { c.armTimer(ro.timer) })
	}
	return true
}

// quietAcked: ack is the ACK of a re-INVITE answerUnchanged answered,
// which the owner never heard of.
func (c *Call) quietAcked(ack *sip.Request) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs := ack.CSeq(); cs == nil || c.quietAck == 0 || cs.SeqNo != c.quietAck {
		return false
	}
	c.quietAck = 0
	return true
}

// ErrUpdateNotAllowed: the callee's reliable provisional did not list
// UPDATE in its Allow, so the early dialog takes no new offer (RFC 3311
// section 5.1).
var ErrUpdateNotAllowed = errors.New("sipgw: the callee does not allow UPDATE")

// UpdateEarly sends sdp as a new offer in the early dialog of an outgoing
// call (RFC 3311 section 5.1): an UPDATE toward the fork whose reliable
// provisional answered the INVITE's offer and was PRACKed, and returns
// the answer in its 2xx (ext and headers as for Reoffer). ErrCallState
// when there is no such early dialog (no PRACKed provisional with SDP, or
// the call is answered: Reoffer then), ErrUpdateNotAllowed when the
// provisional's Allow lacks UPDATE, ErrGlare when an offer is pending
// either way; a refusal (488, 491) is a *ResponseError.
func (c *Call) UpdateEarly(ctx context.Context, sdp []byte, ext ...Header) (answer []byte, headers []Header, err error) {
	c.mu.Lock()
	early := c.earlyDlg
	switch {
	case c.dir != Outgoing || c.state != stateInviting || early == nil:
		c.mu.Unlock()
		return nil, nil, ErrCallState
	case c.reinviteIn || c.reinviteOut:
		c.mu.Unlock()
		return nil, nil, ErrGlare
	}
	c.reinviteOut = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reinviteOut = false
		c.mu.Unlock()
	}()
	r := early.res
	if !headerHasToken(r, "Allow", string(sip.UPDATE)) {
		return nil, nil, ErrUpdateNotAllowed
	}
	if err := c.acquire(ctx); err != nil {
		return nil, nil, err
	}
	defer c.release()
	req := sip.NewRequest(sip.UPDATE, sip.Uri{})
	setSDP(req, sdp)
	c.g.setSupported(req, true, c.trickles())
	ct := c.g.dialogContact(c.identity, c.g.dua.ContactHDR)
	req.AppendHeader(&ct)
	res, err := c.requestEarly(ctx, early, req, ext)
	if err != nil {
		return nil, nil, err
	}
	if !res.IsSuccess() {
		return nil, nil, c.responseError(routing.Update, res)
	}
	c.noteLocal(sdp)
	c.noteRemote(res.Body())
	return res.Body(), webHeaders(c.xform, routing.Update, true, res), nil
}

// requestEarly sends req in the early dialog early, to its Contact with
// its To-tag (not of whatever response came last), the caller holding
// the slot. Built of what the owner saw at the PRACK, never of sipgo's
// dialog, which WaitAnswer writes meanwhile on the owner's goroutine
// (requestIn).
func (c *Call) requestEarly(ctx context.Context, early *earlyDialog, req *sip.Request, ext []Header) (*sip.Response, error) {
	req.Recipient = *early.inv.Recipient.Clone()
	if ct := early.res.Contact(); ct != nil {
		req.Recipient = *ct.Address.Clone()
	}
	req.AppendHeader(sip.HeaderClone(early.res.To()))
	return c.requestIn(ctx, early, req, ext)
}
