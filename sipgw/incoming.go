package sipgw

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// handleNewInvite runs on the sipgo goroutine of a dialog-creating
// INVITE and returns once the INVITE transaction needs nothing more.
func (g *UserAgent) handleNewInvite(req *sip.Request, tx sip.ServerTransaction) {
	g.tryingAtOnce(req, tx) // balancer.go
	identity, local, byAOR, ok := g.incomingIdentity(req)
	if !ok {
		g.respond(tx, req, 404, "Not Found")
		return
	}
	if g.refuseShortTimer(req, tx) { // RFC 4028 §9: 422
		return
	}
	if g.onCall == nil {
		g.respond(tx, req, 480, "Temporarily Unavailable")
		return
	}
	dtx, err := g.dua.ReadInvite(req, tx)
	if err != nil {
		g.respond(tx, req, 400, "Bad Request")
		return
	}
	c := g.newCall(Incoming)
	c.uas, c.inviteTx = dtx, tx
	c.identity, c.local, c.byAOR = identity, local, byAOR
	if f := req.From(); f != nil {
		c.remote, c.display = *f.Address.Clone(), f.DisplayName
	}
	c.offer = req.Body()
	if h := req.GetHeader("Replaces"); h != nil {
		c.replaces = h.Value()
	}
	c.keys = incomingKeys(dtx.InviteRequest)
	c.noteInvite(dtx.InviteRequest)
	c.xform = g.bindIncoming(routing.Call, c.identity, c.remote.String())
	c.headers = webHeaders(c.xform, routing.Invite, false, req)
	c.remoteSDP = c.offer
	if cs := req.CSeq(); cs != nil {
		c.remoteCSeq = cs.SeqNo
	}
	c.inviteDone = make(chan struct{})
	c.state = stateRinging
	c.peer100rel = headerHasToken(req, "Supported", "100rel") || headerHasToken(req, "Require", "100rel")
	c.notePeer(req)
	if err := g.addCall(c); err != nil {
		_ = dtx.Respond(503, "Service Unavailable", nil)
		return
	}
	g.setDialog(dtx.ID, c)
	g.rlog.Info("incoming call", "sipgw: incoming call", "call", c.id, "identity", c.identity, "from", c.remote.String())
	g.wg.Go(func() { c.loop(dtx.Context()) })
	g.onCall(c)
	select {
	case <-c.inviteDone:
	case <-c.done:
	}
}

// incomingKeys reads the dialog keys of the INVITE as sipgo answers it
// (with our To-tag).
func incomingKeys(req *sip.Request) DialogKeys {
	var k DialogKeys
	if h := req.CallID(); h != nil {
		k.CallID = h.Value()
	}
	if h := req.To(); h != nil {
		k.LocalTag, _ = h.Params.Get("tag")
	}
	if h := req.From(); h != nil {
		k.RemoteTag, _ = h.Params.Get("tag")
	}
	if h := req.Via(); h != nil {
		k.ViaBranch, _ = h.Params.Get("branch")
	}
	return k
}

// loop is the owner goroutine of an established (or, for incoming calls,
// ringing) call: it runs delivered work and ends the call when the
// dialog does.
func (c *Call) loop(dctx context.Context) {
	for {
		if c.endForced != nil {
			c.finish(*c.endForced)
			return
		}
		select {
		case f := <-c.in:
			f()
		case <-dctx.Done():
			// Work handed over before the dialog ended goes first:
			// select picks at random among ready cases, and an INFO's
			// event queued before the peer's BYE was dropped half the
			// time the owner came to both at once.
			c.runQueued()
			c.mu.Lock()
			st, final, remoteBye := c.state, c.finalCode, c.remoteBye
			c.mu.Unlock()
			switch {
			case st == stateRinging && final >= 300:
				c.finish(Event{End: EndRejected, Code: final})
			case st == stateRinging:
				c.finish(Event{End: EndCancelled, Code: 487})
			case remoteBye:
				c.mu.Lock()
				hs := c.byeHeaders
				c.mu.Unlock()
				c.finish(Event{End: EndRemoteBye, Code: 200, Headers: hs})
			default:
				c.finish(Event{End: EndError, Code: 500})
			}
			return
		case <-c.g.ctx.Done():
			c.finish(Event{End: EndShutdown, Code: 503})
			return
		case <-c.timerC():
			c.onTimer()
		}
	}
}

// runQueued runs the work waiting in c.in, as much as it holds room
// for: what comes after the dialog's end is left (its senders see done).
func (c *Call) runQueued() {
	for range cap(c.in) {
		select {
		case f := <-c.in:
			f()
		default:
			return
		}
	}
}

func (c *Call) closeFinal() { c.finalOnce.Do(func() { close(c.finalCh) }) }
func (c *Call) closeInviteDone() {
	if c.inviteDone != nil {
		c.doneOnce.Do(func() { close(c.inviteDone) })
	}
}

// decideFinal marks an incoming call's final response; it fails if one
// was already decided.
func (c *Call) decideFinal(code int) error {
	c.mu.Lock()
	if c.dir != Incoming || c.state != stateRinging || c.finalCode != 0 {
		c.mu.Unlock()
		return ErrCallState
	}
	c.finalCode = code
	if code < 300 {
		c.state = stateAnswered
	}
	c.mu.Unlock()
	c.closeFinal()
	// Wait out a provisional retransmission in flight: after this, only
	// the final response writes the dialog's response.
	c.respMu.Lock()
	c.respMu.Unlock() //nolint:staticcheck // a barrier, not a critical section
	return nil
}

// Progress sends a provisional response (180, 183) to an incoming call,
// with sdp for early media. reliable asks for 100rel (RFC 3262) when the
// caller supports it; the PRACK then arrives as EventPrack. A second
// reliable provisional waits for the first one's PRACK (ErrCallState).
func (c *Call) Progress(ctx context.Context, code int, sdp []byte, reliable bool) error {
	if code <= 100 || code > 199 {
		return invalid("provisional code %d", code)
	}
	c.mu.Lock()
	if c.dir != Incoming || c.state != stateRinging || c.finalCode != 0 {
		c.mu.Unlock()
		return ErrCallState
	}
	reliable = reliable && c.peer100rel
	c.rang = true
	var rseq uint32
	var acked chan struct{}
	if reliable {
		if len(c.pracks) > 0 {
			c.mu.Unlock()
			return ErrCallState
		}
		c.rseq++
		rseq = c.rseq
		acked = make(chan struct{})
		if c.pracks == nil {
			c.pracks = map[uint32]chan struct{}{}
		}
		c.pracks[rseq] = acked
		if len(sdp) > 0 {
			c.sdpPrack = acked
		}
	}
	c.mu.Unlock()
	res := sip.NewResponseFromRequest(c.uas.InviteRequest, code, statusText(code), nil)
	if reliable {
		res.AppendHeader(sip.NewHeader("Require", "100rel"))
		res.AppendHeader(sip.NewHeader("RSeq", strconv.FormatUint(uint64(rseq), 10)))
	}
	trickle := c.trickles()
	if trickle {
		advertiseTrickle(res)
	}
	c.g.setSupported(res, true, trickle)
	c.transformResponse(routing.Invite, res)
	setSDP(res, sdp)
	c.noteLocal(sdp)
	ct := c.g.dialogContact(c.identity, c.g.dua.ContactHDR)
	res.AppendHeader(&ct)
	c.respMu.Lock()
	select {
	case <-c.finalCh:
		c.respMu.Unlock()
		return ErrCallState
	default:
	}
	err := c.uas.WriteResponse(res)
	if err == nil && reliable {
		c.retrans.Add(1)
		go c.retransmit(res, acked)
	}
	c.respMu.Unlock()
	return err
}

// retransmit repeats a reliable provisional until its PRACK, the final
// response or 64*T1, when the INVITE is rejected with 504 (RFC 3262 3).
func (c *Call) retransmit(res *sip.Response, acked chan struct{}) {
	defer c.retrans.Done()
	interval := sip.T1
	t := time.NewTimer(interval)
	defer t.Stop()
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	for {
		select {
		case <-acked:
			return
		case <-c.finalCh:
			return
		case <-deadline.C:
			c.reject(504, "No PRACK")
			return
		case <-t.C:
			c.respMu.Lock()
			select {
			case <-c.finalCh:
			default:
				_ = c.uas.WriteResponse(res)
			}
			c.respMu.Unlock()
			interval *= 2
			t.Reset(interval)
		}
	}
}

func (c *Call) handlePrack(req *sip.Request, tx sip.ServerTransaction) {
	var rseq uint64
	if h := req.GetHeader("RAck"); h != nil {
		f := strings.Fields(h.Value())
		if len(f) == 3 {
			rseq, _ = strconv.ParseUint(f[0], 10, 32)
		}
	}
	c.mu.Lock()
	acked := c.pracks[uint32(rseq)]
	delete(c.pracks, uint32(rseq))
	c.mu.Unlock()
	if acked == nil {
		c.g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	// Answer the PRACK before releasing a 2xx that waits for it, so that
	// the caller sees them in that order.
	c.g.respond(tx, req, 200, "OK")
	close(acked)
	body := req.Body()
	c.deliver(func() { c.emit(Event{Kind: EventPrack, RSeq: uint32(rseq), SDP: body}) })
}

// Answer sends 200 with sdp to an incoming call. It first waits (within
// ctx) for the PRACK of a reliable provisional that carried SDP, as RFC
// 3262 section 3 requires, and returns once the 200 is on its way; the ACK arrives as EventConfirmed, or, when none comes
// within 64*T1, the call ends with EndTimeout after a BYE.
func (c *Call) Answer(ctx context.Context, sdp []byte, headers ...Header) error {
	if len(sdp) == 0 {
		return invalid("answer without SDP")
	}
	for _, h := range headers {
		if err := ValidateHeader(h); err != nil {
			return err
		}
	}
	// RFC 3262 section 3: no 2xx while a reliable provisional with SDP
	// awaits its PRACK.
	c.mu.Lock()
	wait := c.sdpPrack
	c.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-c.finalCh: // given up on (504): decideFinal fails below
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := c.decideFinal(200); err != nil {
		return err
	}
	res := sip.NewResponseFromRequest(c.uas.InviteRequest, 200, "OK", nil)
	setSDP(res, sdp)
	c.noteLocal(sdp)
	res.AppendHeader(sip.NewHeader("Allow", c.g.allow))
	timer := c.timerAnswer(c.uas.InviteRequest, res)
	for _, h := range headers {
		res.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	if err := transformOut(c.xform, routing.Invite, true, res, headers); err != nil {
		return err
	}
	ct := c.g.dialogContact(c.identity, c.g.dua.ContactHDR)
	res.AppendHeader(&ct)
	c.mu.Lock()
	c.localContact = ct.Address
	c.mu.Unlock()
	c.g.wg.Go(func() {
		err := c.uas.WriteResponse(res) // returns on ACK
		c.closeInviteDone()
		c.mu.Lock()
		overtaken := c.remoteBye
		c.mu.Unlock()
		if err != nil && overtaken {
			// The caller's BYE overtook its ACK (two UDP datagrams, or
			// sipgo's goroutines, swapped): the BYE confirmed the call
			// and ended it (handleInDialog), and closing the dialog cut
			// the wait for the ACK short. No ACK is missing.
			return
		}
		if err != nil {
			c.g.rlog.Info("no ack", "sipgw: no ACK for 200", "call", c.id, "err", err)
			c.deliver(func() {
				ctx, cancel := context.WithTimeout(context.Background(), sip.Timer_F)
				defer cancel()
				_ = c.bye(ctx, nil)
				c.endForced = &Event{End: EndTimeout, Code: 408}
			})
			return
		}
		c.deliver(func() {
			c.armTimer(timer)
			c.confirmAnswered()
		})
	})
	return nil
}

// confirmAnswered moves an answered incoming call to confirmed and says
// so, once: on the ACK, or on a BYE that overtook it (a caller sends its
// BYE only after its ACK, RFC 3261 section 15.1.1, but two requests over
// UDP, or sipgo's goroutines, may swap them). On the owner goroutine.
func (c *Call) confirmAnswered() {
	c.mu.Lock()
	answered := c.state == stateAnswered
	if answered {
		c.state = stateConfirmed
	}
	c.mu.Unlock()
	if answered {
		c.changed()
		c.emit(Event{Kind: EventConfirmed})
	}
}

// Reject sends a final failure (3xx-6xx) to an incoming call. The call
// then ends with EndRejected.
func (c *Call) Reject(ctx context.Context, code int, reason string) error {
	if code < 300 || code > 699 {
		return invalid("final failure code %d", code)
	}
	if hasCtl(reason) || len(reason) > 128 {
		return invalid("reason")
	}
	return c.reject(code, reason)
}

func (c *Call) reject(code int, reason string) error {
	if err := c.decideFinal(code); err != nil {
		return err
	}
	if reason == "" {
		reason = statusText(code)
	}
	c.g.wg.Go(func() {
		// Returns after the ACK; the dialog then ends, and so does loop.
		c.mu.Lock()
		unreachable := code == 480 && c.byAOR && !c.rang
		c.mu.Unlock()
		var hdrs []sip.Header
		if unreachable {
			hdrs = append(hdrs, sip.NewHeader("Retry-After", aorRetryAfter))
		}
		if err := c.uas.Respond(code, reason, nil, hdrs...); err != nil {
			c.g.log.Debug("sipgw: reject failed", "call", c.id, "err", err)
			c.deliver(func() { c.endForced = &Event{End: EndRejected, Code: code} })
		}
		c.closeInviteDone()
	})
	return nil
}

var statusTexts = map[int]string{
	180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
	200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
	404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
	408: "Request Timeout", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
	486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
	500: "Server Internal Error", 503: "Service Unavailable", 504: "Server Time-out",
	600: "Busy Everywhere", 603: "Decline",
}

func statusText(code int) string {
	if s, ok := statusTexts[code]; ok {
		return s
	}
	return fmt.Sprintf("Status %d", code)
}
