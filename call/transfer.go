package call

import (
	"context"
	"strconv"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Blind transfer with SIP (docs/protocol.md §5.12, RFC 3515, RFC 5589).
// A REFER from SIP becomes a transfer request to the web side; the web
// side's answer answers the REFER, and its message/transfer reports of
// the new call become the REFER's NOTIFYs. A transfer from the web side
// becomes a REFER; the NOTIFYs that come back become message/transfer
// frames, and a 2xx one ends the old call (the transferor's BYE, RFC
// 5589 section 6). Everything here runs with c.mu held.

// referAnswer answers a REFER from SIP and reports on the new call.
type referAnswer interface {
	Accept(ext ...sipgw.Header) error
	Reject(code int, reason string, ext ...sipgw.Header) error
	Notify(ctx context.Context, code int, reason string, ext ...sipgw.Header) error
}

// referIn is a REFER from SIP, from the transfer request to the web side
// until the new call's final status.
type referIn struct {
	corr     string // the transfer request's, on the web side
	r        referAnswer
	accepted bool
}

// transferOut is a transfer from the web side toward SIP, until the
// last NOTIFY.
type transferOut struct {
	corr     string        // the web request's
	answered bool          // the SIP 202 was relayed
	early    []sipgw.Event // NOTIFYs that overtook the 202's report
}

// maxEarlyNotify bounds the NOTIFYs kept while a REFER's 202 is being
// reported: a REFER has a handful (100, 180, final).
const maxEarlyNotify = 8

// sipRefer hands a REFER to the web side as a transfer request.
func (fl *farLeg) sipRefer(ev sipgw.Event) {
	r := fl.sc.refer(ev)
	w := fl.web()
	switch {
	case w == nil:
		_ = r.Reject(protocol.CodeTemporarilyUnavail, "")
		return
	case w.ep.Oracle():
		// wsc.js knows no transfer (docs/protocol.md §11).
		_ = r.Reject(protocol.CodeDecline, "")
		return
	case fl.referIn != nil && !fl.referIn.accepted:
		// One question at a time; an accepted REFER whose reports
		// never came is superseded instead (its subscription expires
		// in sipgw).
		_ = r.Reject(protocol.CodeRequestPending, "")
		return
	}
	out := fl.frameTo(w, protocol.TypeRequest, protocol.ActionTransfer, "")
	out.Header.Initiator, out.Header.Target = fl.remoteName(), w.ep.Identity()
	out.Header.ReferTo = ev.ReferTo
	out.Header.Ext = fl.h.far.webExt(ev.Headers)
	if ev.ReferReplaces != nil {
		// Attended (attended.go): the web side's new call carries the
		// dialog, which only it may use.
		out.Header.Replaces = ev.ReferReplaces.String()
		fl.h.grant(&grant{rep: *ev.ReferReplaces, call: fl.c, to: w.ep.ID()})
	}
	seq, err := w.ep.Send(out, true)
	if err != nil {
		_ = r.Reject(protocol.CodeTemporarilyUnavail, "")
		return
	}
	fl.referIn = &referIn{corr: "s" + strconv.FormatUint(seq, 10), r: r}
}

// pendingRefer is the REFER the web frame f answers or reports on.
func (fl *farLeg) pendingRefer(f *protocol.Frame, accepted bool) *referIn {
	ri := fl.referIn
	if ri == nil || ri.corr != f.Control.CorrelationID || ri.accepted != accepted {
		return nil
	}
	return ri
}

// webAnswerRefer: the web side accepts the REFER. 202 reports follow;
// a 200 says none will (a client that cannot report), so the final
// NOTIFY says 200 at once, on trust.
func (fl *farLeg) webAnswerRefer(l *leg, f *protocol.Frame) {
	ri := fl.pendingRefer(f, false)
	if ri == nil {
		return
	}
	if err := ri.r.Accept(frameExt(f)...); err != nil {
		// Too late: the REFER was refused (480) meanwhile.
		fl.referIn = nil
		fl.h.send(l, errorFrame(f, protocol.CodeRequestTimeout, "the transfer request expired"), false)
		return
	}
	ri.accepted = true
	if f.Header.ResponseCode == protocol.CodeOK {
		fl.referIn = nil
		fl.notifyRefer(ri.r, protocol.CodeOK, "OK", frameExt(f))
	}
}

// webRejectRefer: the web side refuses the REFER, with its code.
func (fl *farLeg) webRejectRefer(l *leg, f *protocol.Frame) {
	if ri := fl.pendingRefer(f, false); ri != nil {
		fl.referIn = nil
		_ = ri.r.Reject(declineCode(f), "", frameExt(f)...)
	}
}

// webReferProgress: the status of the call the web side placed for the
// REFER, as a NOTIFY (the first, 100, went with the 202).
func (fl *farLeg) webReferProgress(l *leg, f *protocol.Frame) {
	ri := fl.pendingRefer(f, true)
	if ri == nil {
		return
	}
	code := f.Header.ResponseCode
	if code < 100 || code > 699 {
		fl.h.send(l, errorFrame(f, protocol.CodeBadRequest, "a transfer status needs response_code 100-699"), false)
		return
	}
	if code >= 200 {
		fl.referIn = nil
	} else if code == protocol.CodeTrying {
		return
	}
	reason := f.Header.Reason
	if reason == "" {
		reason = protocol.Reason(code)
	}
	fl.notifyRefer(ri.r, code, reason, frameExt(f))
}

// notifyRefer queues a NOTIFY; the final one even on a full queue, as
// it ends the peer's subscription.
func (fl *farLeg) notifyRefer(r referAnswer, code int, reason string, ext []sipgw.Header) {
	op := func() {
		ctx, cancel := opCtx()
		defer cancel()
		if err := r.Notify(ctx, code, reason, ext...); err != nil {
			fl.log().Debug("NOTIFY of a REFER", "code", code, "err", err)
		}
	}
	if code >= 200 {
		fl.must(op)
		return
	}
	if !fl.enqueue(op) {
		fl.h.refused[opTransfer].Add(1)
	}
}

// webTransfer: a blind transfer (REFER) from the web side.
func (fl *farLeg) webTransfer(l *leg, f *protocol.Frame) {
	c := fl.c
	h := fl.h
	corr, referTo := protocol.ClientCorrelation(f), f.Header.ReferTo
	var rep *sipgw.Replaces
	if f.Header.Replaces != "" {
		// Attended: the token HandleFrame resolved (attended.go).
		r, err := sipgw.ParseReplaces(f.Header.Replaces)
		if err != nil {
			h.send(l, errorFrame(f, protocol.CodeBadRequest, "bad replaces"), false)
			return
		}
		rep = &r
	}
	if fl.transferOut != nil && !fl.transferOut.answered {
		// An answered one whose last NOTIFY never came is superseded.
		h.send(l, errorFrame(f, protocol.CodeRequestPending, "a transfer is in progress"), false)
		return
	}
	to := &transferOut{corr: corr}
	fl.transferOut = to
	fl.notePending()
	if !fl.enqueue(func() {
		ctx, cancel := opCtx()
		var hs []sipgw.Header
		var err error
		if rep != nil {
			hs, err = fl.sc.TransferReplacing(ctx, referTo, *rep, frameExt(f)...)
		} else {
			hs, err = fl.sc.Transfer(ctx, referTo, frameExt(f)...)
		}
		cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ended || fl.transferOut != to {
			return
		}
		if err != nil {
			fl.transferOut = nil
			fl.notePending()
			code := protocol.ClientErrorCode(sipgw.ResponseCode(err))
			out := fl.frameTo(l, protocol.TypeError, protocol.ActionTransfer, corr)
			out.Header.ErrorCode, out.Header.Reason = code, failReason(code, err)
			out.Header.Ext = h.far.errExt(err)
			h.send(l, out, false)
			return
		}
		out := fl.frameTo(l, protocol.TypeResponse, protocol.ActionTransfer, corr)
		out.Control.MessageState = protocol.StateFinal
		out.Header.ResponseCode, out.Header.Reason = protocol.CodeAccepted, protocol.Reason(protocol.CodeAccepted)
		out.Header.Ext = h.far.webExt(hs)
		h.send(l, out, false)
		to.answered = true
		fl.notePending()
		early := to.early
		to.early = nil
		for _, ev := range early {
			fl.sipTransferProgress(ev)
		}
	}) {
		fl.transferOut = nil
		fl.notePending()
		fl.busy(l, f, opTransfer)
	}
}

// sipTransferProgress relays a NOTIFY of our REFER to the web side as
// message/transfer; after a 2xx the old call ends (RFC 5589 section 6:
// the transferor hangs up once the transfer succeeded).
func (fl *farLeg) sipTransferProgress(ev sipgw.Event) {
	to, w := fl.transferOut, fl.web()
	if to == nil || w == nil {
		return
	}
	if !to.answered {
		if len(to.early) < maxEarlyNotify {
			to.early = append(to.early, ev)
		}
		return
	}
	out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionTransfer, to.corr)
	out.Header.Initiator, out.Header.Target = w.ep.Identity(), fl.remoteName()
	out.Header.ResponseCode, out.Header.Reason = ev.Code, ev.Reason
	out.Header.Ext = fl.h.far.webExt(ev.Headers)
	fl.h.send(w, out, false)
	if !ev.Final && ev.Code < 200 {
		return
	}
	fl.transferOut = nil
	if ev.Code >= 200 && ev.Code < 300 {
		fl.sendShutdown(w)
		fl.webGone = true
		fl.hangup()
		fl.h.endFar(fl.c)
	}
}

// sipRemoteSDP hands the web side the peer's new description, which
// answers the web side's current one (docs/protocol.md §5.9): the
// answer in the ACK of a re-INVITE without SDP, which sipgw answered
// with the web side's last SDP.
func (fl *farLeg) sipRemoteSDP(ev sipgw.Event) {
	w := fl.web()
	if w == nil || w.ep.Oracle() {
		// wsc.js knows no such frame; its media stays as negotiated.
		return
	}
	if _, err := parseSDP(string(ev.SDP)); err != nil {
		fl.badSIPSDP(err)
		return
	}
	out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionStart, "")
	out.Header.Initiator, out.Header.Target = fl.remoteName(), w.ep.Identity()
	out.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: string(ev.SDP)})
	fl.h.send(w, out, false)
}
