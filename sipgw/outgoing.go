package sipgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// DialOptions describe an outgoing call. Every string comes from a web
// frame and is validated.
type DialOptions struct {
	// Identity is the caller's web identity (From).
	Identity string
	// DisplayName is the caller's display name in From (optional).
	DisplayName string
	// Target is the callee as in the frame (see [UserAgent.ParseTarget]).
	Target string
	// SDP is the offer. Required.
	SDP []byte
	// Headers are extension headers (see [ValidateHeader]).
	Headers []Header
	// Offer100rel adds Supported: 100rel, so the peer may send reliable
	// provisionals that must be answered with [Call.Prack].
	Offer100rel bool
	// AutoPrack makes the gateway PRACK reliable provisionals itself.
	AutoPrack bool
	// Trickle announces that we take trickle-ice INFOs (RFC 8840): set it
	// when the web caller can use trickled candidates.
	Trickle bool
	// CallID and FromTag name the dialog (tokens, at most 64 bytes);
	// empty: random ones. The caller chooses them when something must
	// know the dialog before the INVITE leaves: the media relay that
	// rewrites SDP keys its call by them (docs/media.md).
	CallID, FromTag string
	// Route is the trunk and the presentation of the caller.
	Route Route
	// Replaces: the call takes over this dialog of the callee (an
	// attended transfer's new call, RFC 3891); nil for none.
	Replaces *Replaces
	// NotAcceptable, when set, is asked once for another offer when the
	// INVITE is refused for its media: 488 or 606 Not Acceptable, 415
	// Unsupported Media Type. An offer it returns goes in the INVITE sent
	// again (same Call-ID and From-tag, next CSeq, a new branch); nil
	// lets the refusal end the call. It runs on the call's goroutine,
	// before the call ends, with a context that ends with the INVITE's.
	NotAcceptable func(ctx context.Context, code int) []byte
}

// Dial sends an INVITE and returns the call at once; responses arrive as
// events: EventProgress (180/183, Reliable -> call Prack), EventAnswered
// (2xx -> call Ack when the web caller confirms), EventEnded (3xx-6xx,
// cancel, timeout). ctx bounds only the sending of the INVITE; the call
// lives until it ends.
func (g *UserAgent) Dial(ctx context.Context, o DialOptions) (*Call, error) {
	if g.ctx == nil {
		return nil, ErrClosed
	}
	o.Headers = withRouteHeaders(o.Headers, o.Route)
	snd, err := g.senderFor(o.Identity, o.Route.Sender)
	if err != nil {
		return nil, err
	}
	from := snd.from
	to, err := g.ParseTarget(o.Target)
	if err != nil {
		return nil, err
	}
	if err := ValidateDisplayName(o.DisplayName); err != nil {
		return nil, err
	}
	if snd.privacy {
		o.DisplayName = snd.display
	}
	hops, err := g.hops(o.Route)
	if err != nil {
		return nil, err
	}
	ruri, err := requestURI(to, o.Route)
	if err != nil {
		return nil, err
	}
	for _, h := range o.Headers {
		if err := ValidateHeader(h); err != nil {
			return nil, err
		}
	}
	if len(o.SDP) == 0 {
		return nil, invalid("offer without SDP")
	}
	if o.Replaces != nil {
		if _, err := ParseReplaces(o.Replaces.String()); err != nil {
			return nil, err
		}
	}
	if o.CallID != "" && (len(o.CallID) > 64 || !isToken([]byte(o.CallID))) {
		return nil, invalid("Call-ID %q is not a token of at most 64 bytes", o.CallID)
	}
	fromTag := o.FromTag
	if fromTag == "" {
		fromTag = sip.GenerateTagN(16)
	} else if len(fromTag) > 64 || !isToken([]byte(fromTag)) {
		return nil, invalid("From-tag %q is not a token of at most 64 bytes", fromTag)
	}
	c := g.newCall(Outgoing)
	c.identity, c.local, c.remote, c.autoPrack, c.trickle = o.Identity, from, to, o.AutoPrack, o.Trickle
	c.notAcceptable = o.NotAcceptable
	c.xform = o.Route.Transform
	c.hops = hops[1:]
	c.prackCh = make(chan prackCmd)
	if cr, ok := g.cfg.Credentials[o.Identity]; ok && cr.Password != "" {
		c.password = DigestAuth{Username: cr.Username, Password: cr.Password}
		if c.password.Username == "" {
			c.password.Username = from.User
		}
	}
	if err := g.addCall(c); err != nil {
		return nil, err
	}

	req := sip.NewRequest(sip.INVITE, ruri)
	req.SetTransport(g.cfg.Transport)
	fromH := &sip.FromHeader{DisplayName: o.DisplayName, Address: from, Params: sip.NewParams()}
	fromH.Params.Add("tag", fromTag)
	req.AppendHeader(fromH)
	req.AppendHeader(&sip.ToHeader{Address: *to.Clone(), Params: sip.NewParams()})
	if o.CallID != "" {
		cid := sip.CallIDHeader(o.CallID)
		req.AppendHeader(&cid)
	}
	hops[0].set(req)
	snd.present(req)
	ct := g.dialogContact(o.Identity, g.contactHeader("gw"))
	req.AppendHeader(&ct)
	c.localContact = ct.Address
	req.AppendHeader(sip.NewHeader("Allow", g.allow))
	g.setSupported(req, o.Offer100rel, o.Trickle)
	if o.Trickle {
		advertiseTrickle(req)
	}
	for _, h := range g.cfg.SessionTimers.uacHeaders(0, 0, false) {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("User-Agent", g.cfg.UserAgent))
	for _, h := range o.Headers {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	if o.Replaces != nil {
		req.AppendHeader(sip.NewHeader("Replaces", o.Replaces.String()))
	}
	setSDP(req, o.SDP)
	c.localSDP = o.SDP

	c.inviteCtx, c.inviteCancel = context.WithCancel(context.Background())
	g.track()
	c.uac, err = g.dua.WriteInvite(ctx, req)
	for err != nil && ctx.Err() == nil && len(c.hops) > 0 {
		// The proxy's connection was refused: the next one.
		g.rlog.Info("invite failover", "sipgw: INVITE failed over to the next proxy", "call", c.id, "trunk", o.Route.Trunk, "err", err)
		req.RemoveHeader("Via")
		c.hops[0].set(req)
		c.hops = c.hops[1:]
		c.uac, err = g.dua.WriteInvite(ctx, req)
	}
	if err != nil {
		g.untrack()
		c.inviteCancel()
		g.removeCall(c)
		close(c.done)
		return nil, fmt.Errorf("sipgw: INVITE: %w", err)
	}
	c.keys = DialogKeys{LocalTag: fromTag}
	if h := c.uac.InviteRequest.CallID(); h != nil {
		c.keys.CallID = h.Value()
	}
	c.noteInvite(c.uac.InviteRequest)
	// Formatting both URIs costs a dozen allocations: only when logged.
	if g.log.Enabled(ctx, slog.LevelInfo) {
		g.rlog.Info("outgoing call", "sipgw: outgoing call", "call", c.id, "from", from.String(), "to", to.String())
	}
	g.wg.Go(c.runOutgoing)
	return c, nil
}

// toTag is the To-tag of a response: which fork of a forked INVITE sent it.
func toTag(r *sip.Response) string {
	if to := r.To(); to != nil {
		t, _ := to.Params.Get("tag")
		return t
	}
	return ""
}

// runOutgoing owns the call; the INVITE's transaction is counted (track)
// until its final response.
func (c *Call) runOutgoing() {
	// While the INVITE waits for its answer, the owner is inside sipgo's
	// WaitAnswer: the work a request in an early dialog hands the owner
	// (an UPDATE's offer) runs on a goroutine of its own until then,
	// and is done before anything else (the loop, or finish closing the
	// events) runs.
	stop, served := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(served)
		for {
			select {
			case f := <-c.in:
				f()
			case <-stop:
				return
			}
		}
	}()
	err := c.waitAnswer()
	close(stop)
	<-served
	c.g.untrack()
	if err != nil {
		var dr *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &dr):
			c.finish(Event{End: EndRejected, Code: dr.Res.StatusCode, Reason: dr.Res.Reason})
		case c.inviteCtx.Err() != nil:
			if res := c.uac.InviteResponse; res != nil && res.IsSuccess() {
				// The answer crossed our CANCEL: confirm, then end it.
				if id, err := sip.DialogIDFromResponse(res); err == nil {
					c.uac.ID = id
					c.ackAndBye()
				}
			}
			if c.g.ctx.Err() != nil {
				c.finish(Event{End: EndShutdown, Code: 503})
				return
			}
			c.finish(Event{End: EndCancelled, Code: 487})
		case errors.Is(err, sip.ErrTransactionTimeout):
			c.finish(Event{End: EndTimeout, Code: 408})
		default:
			c.g.rlog.Info("invite failed", "sipgw: INVITE failed", "call", c.id, "err", err)
			c.finish(Event{End: EndError, Code: 503, Reason: "Service Unavailable"})
		}
		return
	}
	c.mu.Lock()
	cancelled := c.inviteCtx.Err() != nil
	if !cancelled {
		c.state = stateAnswered
		// The 2xx's Contact is the target now, not an early UPDATE's.
		c.target = nil
	}
	c.mu.Unlock()
	if cancelled {
		c.ackAndBye()
		c.finish(Event{End: EndCancelled, Code: 487})
		return
	}
	c.g.setDialog(c.uac.ID, c)
	c.mu.Lock()
	early := c.early
	c.early = nil
	c.mu.Unlock()
	for _, id := range early {
		if id != c.uac.ID {
			// A fork that lost to the answer: what it sends now is
			// not this call's.
			c.g.setDialog(id, nil)
		}
	}
	res := c.uac.InviteResponse
	c.notePeer(res)
	c.noteRemote(res.Body())
	c.armTimer(c.g.cfg.SessionTimers.uacTimer(res))
	c.emit(Event{Kind: EventAnswered, Code: res.StatusCode, Reason: res.Reason, SDP: res.Body(), ToTag: toTag(res), Headers: webHeaders(c.xform, routing.Invite, true, res)})
	c.loop(c.uac.Context())
}

// waitAnswer waits for the INVITE's final response. A 422 (RFC 4028
// §7.4: our Session-Expires is below the peer's Min-SE) is retried once,
// as a new INVITE of the same Call-ID with the next CSeq, asking for the
// peer's Min-SE. A 503, a 408 or no answer before any provisional beyond
// 100 sends the INVITE to the trunk's next proxy (RFC 3263 section 4.3).
func (c *Call) waitAnswer() error {
	retried, reoffered := false, false
	for {
		err := c.uac.WaitAnswer(c.inviteCtx, sipgo.AnswerOptions{
			OnResponse: c.onResponse,
			Username:   c.password.Username,
			Password:   c.password.Password,
		})
		var dr *sipgo.ErrDialogResponse
		isResponse := errors.As(err, &dr)
		failover := err != nil && c.inviteCtx.Err() == nil && !c.progressed && len(c.hops) > 0 &&
			((isResponse && failsOver(dr.Res, nil)) || (!isResponse && failsOver(nil, err)))
		minSE422 := !retried && isResponse && dr.Res.StatusCode == 422 && minSE(dr.Res) != 0
		var offer []byte
		if !failover && !minSE422 && !reoffered && isResponse && c.notAcceptable != nil && mediaRefusal(dr.Res.StatusCode) {
			reoffered = true
			offer = c.notAcceptable(c.inviteCtx, dr.Res.StatusCode)
		}
		if !failover && !minSE422 && len(offer) == 0 {
			return err
		}
		req := c.uac.InviteRequest.Clone()
		req.RemoveHeader("Via")
		req.CSeq().SeqNo++
		switch {
		case len(offer) > 0:
			req.SetBody(offer)
			c.noteLocal(offer)
		case failover:
			c.g.rlog.Info("invite failover", "sipgw: INVITE failed over to the next proxy", "call", c.id, "err", err)
			c.hops[0].set(req)
			c.hops = c.hops[1:]
		default:
			retried = true
			req.RemoveHeader("Session-Expires")
			req.RemoveHeader("Min-SE")
			for _, h := range c.g.cfg.SessionTimers.uacHeaders(time.Duration(minSE(dr.Res))*time.Second, minSE(dr.Res), false) {
				req.AppendHeader(h)
			}
		}
		uac, err := c.g.dua.WriteInvite(c.inviteCtx, req)
		if err != nil {
			return err
		}
		_ = c.uac.Close()
		c.uac = uac
	}
}

func (c *Call) ackAndBye() {
	ctx, cancel := context.WithTimeout(context.Background(), sip.Timer_F)
	defer cancel()
	if err := c.Ack(ctx, nil); err != nil {
		return
	}
	_ = c.bye(ctx, nil)
}

// onResponse runs on the owner goroutine, inside WaitAnswer, for every
// response to our INVITE.
func (c *Call) onResponse(r *sip.Response) error {
	if r.IsProvisional() {
		// The INVITE the response is to, which a CANCEL copies: sent
		// again (a challenge, a 422, a failover) it has a new branch.
		c.noteInvite(c.uac.InviteRequest)
	}
	if r.StatusCode == 100 || !r.IsProvisional() {
		return nil
	}
	c.progressed = true
	c.notePeer(r)
	var rseq uint32
	reliable := false
	if headerHasToken(r, "Require", "100rel") {
		if h := r.GetHeader("RSeq"); h != nil {
			n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
			if err == nil && n > 0 {
				reliable, rseq = true, uint32(n)
			}
		}
	}
	tag := toTag(r)
	if reliable {
		if rseq <= c.lastRSeq[tag] {
			return nil // a retransmission (RFC 3262 4)
		}
		if c.lastRSeq == nil {
			c.lastRSeq = map[string]uint32{}
		}
		c.lastRSeq[tag] = rseq
	}
	c.mu.Lock()
	c.rseq = rseq
	if e := c.earlyDlg; e != nil && len(r.Body()) > 0 && toTag(e.res) != tag {
		// Another fork's answer: the web caller's early session, and
		// rtpengine's (the latest answer wins, docs/media.md), are that
		// fork's now, and the PRACKed one's no longer: an early re-offer
		// waits for this fork's PRACK, and never goes to the other
		// (docs/protocol.md §5.9).
		c.earlyDlg = nil
	}
	c.mu.Unlock()
	if reliable {
		// A reliable provisional makes an early dialog (RFC 3262): the
		// callee may send UPDATE in it (RFC 3311 section 5.1), which
		// must find the call, not 481.
		if id, err := sip.DialogIDFromResponse(r); err == nil {
			c.g.setDialog(id, c)
			c.mu.Lock()
			c.early = append(c.early, id)
			c.mu.Unlock()
		}
	}
	c.noteRemote(r.Body())
	c.emit(Event{Kind: EventProgress, Code: r.StatusCode, Reason: r.Reason, SDP: r.Body(), Reliable: reliable, RSeq: rseq,
		ToTag: toTag(r), Headers: webHeaders(c.xform, routing.Invite, true, r)})
	if !reliable {
		return nil
	}
	if c.autoPrack {
		if _, err := c.sendPrack(r, rseq, nil); err != nil {
			c.g.rlog.Info("prack failed", "sipgw: PRACK failed", "call", c.id, "err", err)
		}
		return nil
	}
	t := time.NewTimer(sip.Timer_B)
	defer t.Stop()
	select {
	case cmd := <-c.prackCh:
		answer, err := c.sendPrack(r, rseq, cmd.sdp)
		cmd.res <- prackResult{answer, err}
	case <-c.inviteCtx.Done():
	case <-t.C:
		c.g.rlog.Info("no prack", "sipgw: no PRACK from the web side", "call", c.id)
	}
	c.mu.Lock()
	c.rseq = 0
	c.mu.Unlock()
	return nil
}

// Prack acknowledges the reliable provisional of the last EventProgress
// (RFC 3262). sdp is an offer: the provisional answered the INVITE's
// offer, and RFC 6337 section 3.1 lets the PRACK open the next exchange,
// whose answer is in the PRACK's 200, returned. It returns when the peer
// answered the PRACK.
func (c *Call) Prack(ctx context.Context, sdp []byte) ([]byte, error) {
	c.mu.Lock()
	pending := c.dir == Outgoing && c.state == stateInviting && c.rseq != 0
	c.mu.Unlock()
	if !pending {
		return nil, ErrCallState
	}
	cmd := prackCmd{sdp: sdp, res: make(chan prackResult, 1)}
	select {
	case c.prackCh <- cmd:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, ErrCallState
	}
	select {
	case r := <-cmd.res:
		return r.answer, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// sendPrack sends the PRACK of the reliable provisional r and returns the
// SDP of its 200, the answer to an offer in sdp.
func (c *Call) sendPrack(r *sip.Response, rseq uint32, sdp []byte) ([]byte, error) {
	target := *c.uac.InviteRequest.Recipient.Clone()
	if ct := r.Contact(); ct != nil {
		target = *ct.Address.Clone()
	}
	req := sip.NewRequest(sip.PRACK, target)
	req.AppendHeader(sip.NewHeader("RAck", fmt.Sprintf("%d %d INVITE", rseq, c.uac.InviteRequest.CSeq().SeqNo)))
	setSDP(req, sdp)
	c.noteLocal(sdp)
	ctx, cancel := context.WithTimeout(c.inviteCtx, sip.Timer_F)
	defer cancel()
	res, err := c.request(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.pracked = true
	if res.IsSuccess() && len(r.Body()) > 0 {
		// r answered the INVITE's offer and is acknowledged: its early
		// dialog may carry a new offer (UpdateEarly).
		c.earlyDlg = &earlyDialog{inv: c.uac.InviteRequest, res: r, uac: c.uac}
	}
	c.mu.Unlock()
	if !res.IsSuccess() {
		return nil, &ResponseError{Code: res.StatusCode, Reason: res.Reason}
	}
	if len(sdp) == 0 {
		// No offer, so no answer: what a 200 carries anyway is no
		// description of the peer's (RFC 6337 section 3.1).
		return nil, nil
	}
	c.noteRemote(res.Body())
	return res.Body(), nil
}

// Ack confirms the 2xx of an outgoing call (the web caller's complete).
// sdp is for a late offer only.
func (c *Call) Ack(ctx context.Context, sdp []byte) error {
	c.mu.Lock()
	if c.dir != Outgoing || c.state != stateAnswered || c.acked {
		c.mu.Unlock()
		return ErrCallState
	}
	c.acked = true
	c.state = stateConfirmed
	pracked := c.pracked
	c.mu.Unlock()
	c.changed()
	if !pracked && len(sdp) == 0 {
		// sipgo's ACK also answers 2xx retransmissions.
		return c.uac.Ack(ctx)
	}
	// After a PRACK sipgo's dialog CSeq has moved on; build the ACK for
	// the INVITE's CSeq ourselves (RFC 3261 13.2.2.4).
	inv, res := c.uac.InviteRequest, c.uac.InviteResponse
	target := *inv.Recipient.Clone()
	if ct := res.Contact(); ct != nil {
		target = *ct.Address.Clone()
	}
	ack := sip.NewRequest(sip.ACK, target)
	ack.AppendHeader(sip.HeaderClone(inv.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(inv.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	rrs := res.GetHeaders("Record-Route")
	for i := len(rrs) - 1; i >= 0; i-- {
		ack.AppendHeader(sip.NewHeader("Route", rrs[i].Value()))
	}
	ack.AppendHeader(sip.HeaderClone(inv.Contact()))
	setSDP(ack, sdp)
	c.noteLocal(sdp)
	ack.SetTransport(inv.Transport())
	return c.g.cli.WriteRequest(ack)
}

func headerHasToken(m interface{ GetHeaders(string) []sip.Header }, name, token string) bool {
	for _, h := range m.GetHeaders(name) {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// mediaRefusal: a final response that refuses the offer itself (RFC 3261
// sections 21.4.26, 21.4.13, 21.6.4), which another offer may pass.
func mediaRefusal(code int) bool { return code == 488 || code == 415 || code == 606 }
