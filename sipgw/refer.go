package sipgw

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// REFER both ways (RFC 3515). A REFER from the peer waits for the web
// side's answer, which becomes its final response: 202 and then the
// implicit subscription's NOTIFYs (message/sipfrag, "SIP/2.0 100 Trying"
// first, then the new call's final status), or the web side's refusal.
// A REFER is a non-INVITE request: the peer gives up on it after Timer F
// (64*T1), and a late 2xx would race that timeout (RFC 4320). So the web
// side's answer is awaited for half of Timer F only; after that the
// REFER is refused with 480, not 408: a 408 to a request inside a dialog
// ends the dialog (RFC 3261 section 12.2.1.2), and the call goes on. The
// NOTIFYs of a REFER we sent become EventTransferProgress.

// referExpiry is the lifetime of the implicit subscription of a REFER we
// accepted: the web side that never reports the new call's final status
// gets a last NOTIFY (reason=timeout) after it.
const referExpiry = 120 * time.Second

// referWait bounds the wait for the web side's answer to a REFER.
func referWait() time.Duration { return 32 * sip.T1 }

// Refer is a REFER from the peer waiting for the web side's answer
// (EventRefer). Accept it, then report the new call's progress with
// Notify; or Reject it.
type Refer struct {
	c        *Call
	req      *sip.Request
	tx       sip.ServerTransaction
	once     sync.Once
	answered chan struct{} // closed by Accept or Reject
	accepted bool          // set before answered closes
	slot     chan struct{} // orders the NOTIFYs; taken by Accept for the first
	final    chan struct{} // closed once a final NOTIFY went (or the subscription ended)
	mu       sync.Mutex
	last     string // the last status line sent
	ended    bool
}

// Accept answers the REFER 202; the "100 Trying" NOTIFY follows. ext
// are the extension headers of the web answer, for the header rules'
// {ext:NAME}.
func (r *Refer) Accept(ext ...Header) error {
	err := ErrCallState
	r.once.Do(func() {
		r.slot <- struct{}{} // free: the first NOTIFY is the 100
		res := sip.NewResponseFromRequest(r.req, 202, "Accepted", nil)
		ct := r.c.g.dua.ContactHDR
		res.AppendHeader(&ct)
		r.c.transformAnswer(routing.Refer, res, ext)
		err = r.tx.Respond(res)
		r.accepted = err == nil
		if !r.accepted {
			<-r.slot
		}
		close(r.answered)
	})
	return err
}

// Reject answers the REFER with a failure code (603, 403...).
func (r *Refer) Reject(code int, reason string, ext ...Header) error {
	if code < 300 || code > 699 {
		return invalid("code %d", code)
	}
	return r.refuse(code, reason, ext...)
}

func (r *Refer) refuse(code int, reason string, ext ...Header) error {
	err := ErrCallState
	r.once.Do(func() {
		if reason == "" {
			reason = statusText(code)
		}
		res := sip.NewResponseFromRequest(r.req, code, reason, nil)
		r.c.transformAnswer(routing.Refer, res, ext)
		err = r.tx.Respond(res)
		close(r.answered)
	})
	return err
}

// Notify sends a NOTIFY with the status of the new call; code >= 200 is
// the last one (Subscription-State: terminated;reason=noresource, RFC
// 3515 section 2.4.5). It returns once the peer answered it.
// ext are the extension headers of the web frame behind it ({ext:NAME}).
func (r *Refer) Notify(ctx context.Context, code int, reason string, ext ...Header) error {
	if code < 100 || code > 699 {
		return invalid("code %d", code)
	}
	if !r.accepted {
		return ErrCallState
	}
	if reason == "" {
		reason = statusText(code)
	}
	state := "active;expires=" + strconv.Itoa(int(referExpiry/time.Second))
	if code >= 200 {
		state = "terminated;reason=noresource"
	}
	return r.notify(ctx, code, reason, state, ext)
}

func (r *Refer) notify(ctx context.Context, code int, reason, state string, ext []Header) error {
	select {
	case r.slot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.c.done:
		return ErrCallState
	}
	defer func() { <-r.slot }()
	return r.send(ctx, code, reason, state, ext)
}

// send sends one NOTIFY; the caller holds r.slot.
func (r *Refer) send(ctx context.Context, code int, reason, state string, ext []Header) error {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return ErrCallState
	}
	line := "SIP/2.0 " + strconv.Itoa(code) + " " + reason
	r.last = line
	final := strings.HasPrefix(state, "terminated")
	if final {
		r.ended = true
		close(r.final)
	}
	r.mu.Unlock()
	req := sip.NewRequest(sip.NOTIFY, sip.Uri{})
	ev := "refer"
	if cs := r.req.CSeq(); cs != nil {
		// RFC 3515 section 2.4.6: the id of a second REFER's subscription.
		ev += ";id=" + strconv.FormatUint(uint64(cs.SeqNo), 10)
	}
	req.AppendHeader(sip.NewHeader("Event", ev))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(line + "\r\n"))
	_, err := r.c.simple(ctx, req, ext)
	return err
}

// handleRefer runs on the sipgo goroutine of a REFER: it hands it to the
// web side, answers it with the web side's answer, sends the first
// NOTIFY, and ends the subscription after referExpiry if the web side
// never reports a final status.
func (c *Call) handleRefer(req *sip.Request, tx sip.ServerTransaction) {
	h := req.GetHeader("Refer-To")
	if h == nil {
		c.g.respond(tx, req, 400, "Missing Refer-To")
		return
	}
	var u sip.Uri
	v := strings.Trim(strings.TrimSpace(h.Value()), "<>")
	if err := sip.ParseUri(v, &u); err != nil {
		c.g.respond(tx, req, 400, "Bad Refer-To")
		return
	}
	rep, rerr := referReplaces(&u)
	if rerr != nil {
		c.g.respond(tx, req, 400, "Bad Replaces in Refer-To")
		return
	}
	r := &Refer{c: c, req: req, tx: tx, answered: make(chan struct{}), slot: make(chan struct{}, 1), final: make(chan struct{})}
	if !c.deliver(func() {
		c.emit(Event{Kind: EventRefer, ReferTo: u.String(), ReferReplaces: rep, Refer: r, Headers: c.peerHeaders(req)})
	}) {
		_ = r.refuse(481, "")
		return
	}
	t := time.NewTimer(referWait())
	defer t.Stop()
	select {
	case <-r.answered:
	case <-c.done:
		_ = r.refuse(481, "")
	case <-t.C:
		_ = r.refuse(480, "")
	}
	if !r.accepted {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sip.Timer_F)
	err := r.send(ctx, 100, "Trying", "active;expires="+strconv.Itoa(int(referExpiry/time.Second)), nil)
	cancel()
	<-r.slot
	if err != nil {
		c.g.log.Debug("sipgw: NOTIFY of a REFER failed", "call", c.id, "err", err)
		return
	}
	t.Reset(referExpiry)
	select {
	case <-r.final:
	case <-c.done:
	case <-t.C:
		r.mu.Lock()
		last := r.last
		r.mu.Unlock()
		code, reason := parseSipfrag([]byte(last))
		ctx, cancel := context.WithTimeout(context.Background(), sip.Timer_F)
		_ = r.notify(ctx, code, reason, "terminated;reason=timeout", nil)
		cancel()
	}
}

// handleReferNotify answers a NOTIFY of the REFER we sent and reports
// the status line of its message/sipfrag body (RFC 3515 section 2.4.5).
func (c *Call) handleReferNotify(req *sip.Request, tx sip.ServerTransaction) {
	ev := ""
	if h := req.GetHeader("Event"); h != nil {
		ev, _, _ = strings.Cut(h.Value(), ";")
	}
	if !strings.EqualFold(strings.TrimSpace(ev), "refer") {
		c.g.respond(tx, req, 489, "Bad Event")
		return
	}
	state := ""
	if h := req.GetHeader("Subscription-State"); h != nil {
		state, _, _ = strings.Cut(h.Value(), ";")
	}
	c.g.respond(tx, req, 200, "OK")
	code, reason := parseSipfrag(req.Body())
	if code == 0 {
		return
	}
	final := strings.EqualFold(strings.TrimSpace(state), "terminated")
	c.deliver(func() {
		c.emit(Event{Kind: EventTransferProgress, Code: code, Reason: reason, Final: final, Headers: c.peerHeaders(req)})
	})
}

// parseSipfrag reads the status line of a message/sipfrag body; code 0
// when it has none.
func parseSipfrag(b []byte) (int, string) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.SplitN(strings.TrimSpace(line), " ", 3)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0, ""
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 100 || code > 699 {
		return 0, ""
	}
	reason := ""
	if len(f) == 3 {
		reason = f[2]
	}
	return code, reason
}
