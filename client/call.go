package client

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Call is one call (one subsession). Its methods are safe for concurrent
// use; each sends one frame and returns once it is queued (retained and
// written, or retained until the session resumes).
type Call struct {
	c        *Client
	id       string
	peer     string
	incoming bool
	kinds    []string // of the initial offer; set before the Call is shared
	replaces string   // incoming: our call this one replaces (attended transfer)

	// Owned by the loop.
	caller, callee string
	startCorr      string // correlation of the initial start
	answered       bool   // the final answer was sent or received
	established    bool   // complete sent or received
	ended          bool
	completeCorr   string // what our complete correlates to
	reofferOut     string // our re-offer awaiting its answer
	reofferIn      string // the peer's re-offer awaiting ours
	earlyOfferIn   string // the peer's offer in the early dialog, until its complete
	earlyMedia     bool   // outgoing: a provisional brought the peer's SDP: a re-offer may go before the answer
	transferIn     string // the peer's transfer awaiting our response
	transferReport string // the peer's transfer we accepted, until its final report
	answerT        *time.Timer
	answerGen      int // which arming of answerT is current
}

// ID is the call's subsession id.
func (k *Call) ID() string { return k.id }

// Peer is the other party: the callee of an outgoing call, the caller of
// an incoming one.
func (k *Call) Peer() string { return k.peer }

// Incoming reports whether the peer placed the call.
func (k *Call) Incoming() bool { return k.incoming }

// Replaces is, for an incoming call of an attended transfer, the id of
// our call it replaces ("" for others): answer it without ringing, then
// end that call (docs/protocol.md §5.12).
func (k *Call) Replaces() string { return k.replaces }

// StartCall places a call to target with an SDP offer. The subsession id
// and the start's correlation id are both c<seq>, as wsc.js makes them.
// Progress arrives as EventCall events.
func (c *Client) StartCall(ctx context.Context, target, sdp string, ext ...protocol.Ext) (*Call, error) {
	return c.StartCallReplacing(ctx, target, sdp, "", ext...)
}

// StartCallReplacing is StartCall for the new call of an attended
// transfer: replaces is the token of the transfer request (Event.Replaces
// of CallTransfer); "" places a plain call.
func (c *Client) StartCallReplacing(ctx context.Context, target, sdp, replaces string, ext ...protocol.Ext) (*Call, error) {
	var k *Call
	err := c.do(ctx, func() error {
		corr := c.nextCorr()
		call := &Call{c: c, id: corr, peer: target, caller: c.identity(), callee: target, startCorr: corr, kinds: mediaKinds(sdp)}
		f := call.frame(protocol.TypeRequest, protocol.ActionStart, corr, ext)
		f.Header.Replaces = replaces
		f.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: sdp})
		if err := c.send(f); err != nil {
			return err
		}
		c.calls[call.id] = call
		call.armAnswer(c.o.requestTimeout(protocol.PackageCall, protocol.ActionStart))
		k = call
		return nil
	})
	return k, err
}

// armAnswer bounds the wait for the answer to our start or re-offer:
// past d the call fails, or the re-offer does (answerTimedOut). Loop
// only.
func (k *Call) armAnswer(d time.Duration) {
	k.stopAnswer()
	k.answerGen++
	gen, c := k.answerGen, k.c
	k.answerT = time.AfterFunc(d, func() {
		select {
		case c.cmds <- func() { k.answerTimedOut(gen, d) }:
		case <-c.done:
		}
	})
}

func (k *Call) stopAnswer() {
	if k.answerT != nil {
		k.answerT.Stop()
		k.answerT = nil
	}
}

// answerTimedOut fails a call whose start got no answer in time, and
// cancels it at the gateway, which may hold it still; or fails a
// re-offer that got none (the call goes on with the media it had).
func (k *Call) answerTimedOut(gen int, d time.Duration) {
	if k.ended || gen != k.answerGen {
		return
	}
	c := k.c
	if k.answered || k.reofferOut != "" {
		if k.reofferOut == "" {
			return
		}
		k.reofferOut = ""
		k.rearmEarly()
		c.emit(Event{Kind: EventCall, Call: k, CallEvent: CallReOfferFailed, Code: protocol.CodeRequestTimeout, Reason: "no answer",
			Err: c.timedOut(protocol.PackageCall, protocol.ActionStart, d)})
		return
	}
	err := c.timedOut(protocol.PackageCall, protocol.ActionStart, d)
	// Retained while the socket is down: the resume carries it.
	c.send(k.frame(protocol.TypeMessage, protocol.ActionShutdown, k.startCorr, nil))
	k.end()
	c.emit(Event{Kind: EventCall, Call: k, CallEvent: CallFailed, Code: protocol.CodeRequestTimeout, Reason: "no answer", Err: err})
}

// frame builds a call frame with the initiator/target conventions of the
// SDK (wsc-sdk-1.0-wire.md section 1.4): requests and messages go from us
// to the peer; responses and errors name the caller and the callee.
func (k *Call) frame(typ protocol.Type, action protocol.Action, corr string, ext []protocol.Ext) *protocol.Frame {
	f := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageCall, SubsessionID: k.id, CorrelationID: corr},
		Header:  protocol.Header{Action: action, Ext: ext},
	}
	switch typ {
	case protocol.TypeResponse, protocol.TypeError:
		f.Header.Initiator, f.Header.Target = k.caller, k.callee
	default:
		f.Header.Initiator, f.Header.Target = k.c.identity(), k.peer
	}
	return f
}

// act runs fn on the loop for a call that is still on.
func (k *Call) act(ctx context.Context, fn func() error) error {
	return k.c.do(ctx, func() error {
		if k.ended {
			return ErrCallState
		}
		return fn()
	})
}

// Ring tells the caller that we ring: response subsequent, 180.
func (k *Call) Ring(ctx context.Context, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if !k.incoming || k.answered {
			return ErrCallState
		}
		f := k.frame(protocol.TypeResponse, protocol.ActionStart, k.startCorr, ext)
		f.Control.MessageState = protocol.StateSubsequent
		f.Header.ResponseCode = protocol.CodeRinging
		return k.c.send(f)
	})
}

// EarlyMedia sends the caller early media: response subsequent, 183
// with sdp (a SIP caller gets it as a reliable 183 when it supports
// 100rel).
func (k *Call) EarlyMedia(ctx context.Context, sdp string, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if !k.incoming || k.answered {
			return ErrCallState
		}
		f := k.frame(protocol.TypeResponse, protocol.ActionStart, k.startCorr, ext)
		f.Control.MessageState = protocol.StateSubsequent
		f.Header.ResponseCode = protocol.CodeSessionProgress
		f.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: sdp})
		return k.c.send(f)
	})
}

// Answer answers the pending offer with sdp (response final, 200): the
// peer's re-offer when there is one, else the incoming call.
func (k *Call) Answer(ctx context.Context, sdp string, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		corr := k.reofferIn
		if corr == "" {
			if !k.incoming || k.answered {
				return ErrCallState
			}
			corr = k.startCorr
		}
		f := k.frame(protocol.TypeResponse, protocol.ActionStart, corr, ext)
		f.Control.MessageState = protocol.StateFinal
		f.Header.ResponseCode = protocol.CodeOK
		f.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: sdp})
		if err := k.c.send(f); err != nil {
			return err
		}
		if k.reofferIn != "" {
			k.reofferIn = ""
		} else {
			k.answered = true
		}
		return nil
	})
}

// Decline rejects the pending offer with code (default 603): the peer's
// re-offer, after which the call goes on, or the incoming call, which
// then ends.
func (k *Call) Decline(ctx context.Context, code int, ext ...protocol.Ext) error {
	if code == 0 {
		code = protocol.CodeDecline
	}
	return k.act(ctx, func() error {
		corr := k.reofferIn
		if corr == "" {
			if !k.incoming || k.answered {
				return ErrCallState
			}
			corr = k.startCorr
		}
		f := k.frame(protocol.TypeError, protocol.ActionStart, corr, ext)
		f.Header.ErrorCode = code
		f.Header.Reason = protocol.Reason(code)
		if err := k.c.send(f); err != nil {
			return err
		}
		if k.reofferIn != "" {
			k.reofferIn = ""
		} else {
			k.end()
		}
		return nil
	})
}

// Hangup ends the call: a cancel (shutdown correlated with the start)
// before the answer, a bye (shutdown with a new correlation) after it.
// The call is over at once; no event follows.
func (k *Call) Hangup(ctx context.Context, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		corr := k.startCorr
		if k.answered {
			corr = k.c.nextCorr()
		}
		if err := k.c.send(k.frame(protocol.TypeMessage, protocol.ActionShutdown, corr, ext)); err != nil {
			return err
		}
		k.end()
		k.c.hungUp = append(k.c.hungUp, k)
		if len(k.c.hungUp) > maxHungUp {
			k.c.hungUp = slices.Delete(k.c.hungUp, 0, 1)
		}
		return nil
	})
}

// ReOffer sends a new offer on the established call (hold, resume, new
// media, ICE restart). The answer arrives as CallReOfferAnswered. An
// outgoing call may re-offer before the answer once a provisional brought
// early media: toward SIP after the Prack of a reliable 183, as an UPDATE
// (docs/protocol.md §5.9); the gateway refuses it otherwise
// (CallReOfferFailed, the call goes on).
func (k *Call) ReOffer(ctx context.Context, sdp string, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if !(k.answered || k.earlyMedia) || k.reofferOut != "" {
			return ErrCallState
		}
		corr := k.c.nextCorr()
		f := k.frame(protocol.TypeRequest, protocol.ActionStart, corr, ext)
		f.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: sdp})
		if err := k.c.send(f); err != nil {
			return err
		}
		k.reofferOut = corr
		k.armAnswer(k.c.o.requestTimeout(protocol.PackageCall, protocol.ActionStart))
		return nil
	})
}

// rearmEarly: a re-offer before the answer took the start's answer timer;
// the call waits for its answer again.
func (k *Call) rearmEarly() {
	if !k.answered && !k.incoming {
		k.armAnswer(k.c.o.ProgressTimeout)
	}
}

// Complete tells the peer its answer was applied (SIP ACK). Needed only
// with Options.ManualComplete; sdp is normally empty.
func (k *Call) Complete(ctx context.Context, sdp string, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if k.completeCorr == "" {
			return ErrCallState
		}
		return k.sendComplete(sdp, ext)
	})
}

func (k *Call) sendComplete(sdp string, ext []protocol.Ext) error {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: k.id, CorrelationID: k.completeCorr},
		Header:  protocol.Header{Action: protocol.ActionComplete, Ext: ext},
	}
	if sdp != "" {
		f.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: sdp})
	}
	k.completeCorr = ""
	k.established = true
	return k.c.send(f)
}

// Prack acknowledges the provisional response of an outgoing call.
func (k *Call) Prack(ctx context.Context, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if k.incoming {
			return ErrCallState
		}
		return k.c.send(k.frame(protocol.TypeRequest, protocol.ActionPrack, k.startCorr, ext))
	})
}

// PrackOffer acknowledges the reliable provisional response of an
// outgoing call that answered our offer, with a new offer (RFC 6337
// section 3.1, docs/protocol.md §5.6): the answer comes as CallPrack's SDP.
func (k *Call) PrackOffer(ctx context.Context, sdp string, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if k.incoming {
			return ErrCallState
		}
		f := k.frame(protocol.TypeRequest, protocol.ActionPrack, k.startCorr, ext)
		f.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: sdp})
		return k.c.send(f)
	})
}

// Trickle sends ICE candidates as an SDP fragment (a=mid:, a=candidate:).
func (k *Call) Trickle(ctx context.Context, candidates string, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		f := k.frame(protocol.TypeMessage, protocol.ActionTrickle, "", ext)
		f.Payload = protocol.EncodePayload(protocol.CallPayload{Candidates: candidates})
		return k.c.send(f)
	})
}

// DTMF sends digits (ext), duration in milliseconds (0: the gateway's).
func (k *Call) DTMF(ctx context.Context, digits string, duration int, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		f := k.frame(protocol.TypeMessage, protocol.ActionDTMF, "", ext)
		f.Payload = protocol.EncodePayload(protocol.CallPayload{Digits: digits, Duration: duration})
		return k.c.send(f)
	})
}

// Transfer asks the peer to call referTo instead (ext; SIP REFER) and
// waits for the answer: 202 or 200, or an error code with *FrameError.
func (k *Call) Transfer(ctx context.Context, referTo string, ext ...protocol.Ext) (int, error) {
	return k.TransferReplacing(ctx, referTo, nil, ext...)
}

// TransferReplacing is an attended transfer: the peer's new call to
// referTo replaces our established call consult (docs/protocol.md §5.12);
// consult nil makes it blind.
func (k *Call) TransferReplacing(ctx context.Context, referTo string, consult *Call, ext ...protocol.Ext) (int, error) {
	if consult == k {
		return 0, ErrCallState
	}
	return k.c.request(ctx, func() *protocol.Frame {
		if k.ended {
			return nil
		}
		f := k.frame(protocol.TypeRequest, protocol.ActionTransfer, "", ext)
		f.Header.ReferTo = referTo
		if consult != nil {
			f.Header.Replaces = consult.id
		}
		return f
	})
}

// RespondTransfer answers the peer's transfer request (CallTransfer):
// a 2xx accepts it, anything else refuses it.
func (k *Call) RespondTransfer(ctx context.Context, code int, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if k.transferIn == "" {
			return ErrCallState
		}
		typ := protocol.TypeResponse
		if code >= 300 {
			typ = protocol.TypeError
		}
		f := k.frame(typ, protocol.ActionTransfer, k.transferIn, ext)
		if typ == protocol.TypeError {
			f.Header.ErrorCode = code
		} else {
			f.Header.ResponseCode = code
			f.Control.MessageState = protocol.StateFinal
		}
		f.Header.Reason = protocol.Reason(code)
		if code == protocol.CodeAccepted {
			k.transferReport = k.transferIn
		}
		k.transferIn = ""
		return k.c.send(f)
	})
}

// ReportTransfer reports the status of the call placed for a transfer
// accepted with 202 (docs/protocol.md §5.12): 1xx while it proceeds,
// then its final code (200 when answered). A SIP transferor gets each
// as a NOTIFY.
func (k *Call) ReportTransfer(ctx context.Context, code int, ext ...protocol.Ext) error {
	return k.act(ctx, func() error {
		if k.transferReport == "" || code < 100 || code > 699 {
			return ErrCallState
		}
		f := k.frame(protocol.TypeMessage, protocol.ActionTransfer, k.transferReport, ext)
		f.Header.ResponseCode, f.Header.Reason = code, protocol.Reason(code)
		if code >= 200 {
			k.transferReport = ""
		}
		return k.c.send(f)
	})
}

func (k *Call) end() {
	k.stopAnswer()
	k.ended = true
	delete(k.c.calls, k.id)
}

// maxHungUp bounds the calls we hung up that wait for their figures: a
// call without media through rtpengine never gets any.
const maxHungUp = 16

// figuresFor finds the call we hung up whose figures f carries (a
// shutdown of ours echoed with payload.media, docs/protocol.md §5.8),
// and forgets it.
func (c *Client) figuresFor(f *protocol.Frame) *Call {
	if f.Control.Type != protocol.TypeMessage || f.Header.Action != protocol.ActionShutdown {
		return nil
	}
	for i, k := range c.hungUp {
		if k.id == f.Control.SubsessionID {
			c.hungUp = slices.Delete(c.hungUp, i, i+1)
			return k
		}
	}
	return nil
}

// onCallFrame handles a call frame; false means it fits no known call.
func (c *Client) onCallFrame(f *protocol.Frame) bool {
	k := c.calls[f.Control.SubsessionID]
	t, a := f.Control.Type, f.Header.Action
	if k == nil {
		if hk := c.figuresFor(f); hk != nil {
			var sp protocol.ShutdownPayload
			_ = protocol.DecodePayload(f.Payload, &sp)
			c.emit(Event{Kind: EventCall, Call: hk, CallEvent: CallFigures, Media: sp.Media, Header: &f.Header})
			return true
		}
	}
	if k == nil && (t != protocol.TypeRequest || a != protocol.ActionStart || f.Control.SubsessionID == "") {
		return false
	}
	var p protocol.CallPayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		c.badCallPayload(f, err)
		return true
	}
	if k == nil {
		c.onIncomingCall(f, p)
		return true
	}
	return c.onCallEvent(k, f, p)
}

// badCallPayload answers a call request whose payload does not decode
// with the error a gateway would send (and starts no call for it); any
// other such frame becomes an EventError, as it means nothing to the
// call.
func (c *Client) badCallPayload(f *protocol.Frame, err error) {
	code, reason := protocol.CodeOf(err), protocol.ReasonOf(err)
	if f.Control.Type == protocol.TypeRequest {
		r := &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageCall,
				SubsessionID: f.Control.SubsessionID, CorrelationID: f.Control.CorrelationID},
			Header: protocol.Header{Action: f.Header.Action, ErrorCode: code, Reason: reason,
				Initiator: f.Header.Initiator, Target: f.Header.Target},
		}
		c.send(r)
	}
	c.emit(Event{Kind: EventError, Frame: f, Code: code, Reason: reason, Header: &f.Header,
		Err: fmt.Errorf("client: call frame payload: %w", err)})
}

// onIncomingCall makes a Call of the start f of an unknown subsession.
func (c *Client) onIncomingCall(f *protocol.Frame, p protocol.CallPayload) {
	k := &Call{c: c, id: f.Control.SubsessionID, peer: f.Header.Initiator, incoming: true,
		caller: f.Header.Initiator, callee: f.Header.Target, startCorr: f.Control.CorrelationID, kinds: mediaKinds(p.SDP),
		replaces: f.Header.Replaces}
	if k.callee == "" {
		k.callee = c.identity()
	}
	c.calls[k.id] = k
	c.emit(Event{Kind: EventIncomingCall, Call: k, SDP: p.SDP, Header: &f.Header, Replaces: k.replaces})
}

// onCallEvent handles the frame f, with payload p, of the call k; false
// means it fits none of the call's events.
func (c *Client) onCallEvent(k *Call, f *protocol.Frame, p protocol.CallPayload) bool {
	t, a := f.Control.Type, f.Header.Action
	ev := Event{Kind: EventCall, Call: k, Code: f.Header.ResponseCode, Reason: f.Header.Reason, SDP: p.SDP, Header: &f.Header}
	corr := f.Control.CorrelationID
	switch {
	case t == protocol.TypeRequest && a == protocol.ActionStart:
		if k.reofferOut != "" {
			// Glare: our own re-offer is outstanding (wsc.js does the same).
			g := k.frame(protocol.TypeError, protocol.ActionStart, corr, nil)
			g.Header.ErrorCode, g.Header.Reason = protocol.CodeRequestPending, "Glare"
			c.send(g)
			return true
		}
		k.reofferIn = corr
		if !k.answered {
			k.earlyOfferIn = corr
		}
		ev.CallEvent = CallReOffer
	case t == protocol.TypeResponse && a == protocol.ActionStart && corr != "" && corr == k.reofferOut:
		if f.Control.MessageState == protocol.StateSubsequent {
			k.armAnswer(c.o.ProgressTimeout)
			ev.CallEvent = CallRinging
			break
		}
		k.stopAnswer()
		k.reofferOut = ""
		k.rearmEarly()
		ev.CallEvent = CallReOfferAnswered
		if ev.Code == 0 {
			ev.Code = protocol.CodeOK
		}
		c.emit(ev)
		k.completeCorr = corr
		if !c.o.ManualComplete {
			k.sendComplete("", nil)
		}
		return true
	case t == protocol.TypeResponse && a == protocol.ActionStart && !k.incoming:
		if f.Control.MessageState == protocol.StateSubsequent || (ev.Code >= 100 && ev.Code < 200) {
			if !k.answered {
				// An answer is coming: it may take as long as a phone rings.
				k.armAnswer(c.o.ProgressTimeout)
			}
			ev.CallEvent = CallRinging
			if ev.Code == 0 {
				ev.Code = protocol.CodeRinging
			}
			if p.SDP != "" {
				ev.CallEvent = CallEarlyMedia
				k.earlyMedia = true
			}
			break
		}
		if ev.Code == 0 {
			ev.Code = protocol.CodeOK
		}
		k.answered = true
		k.stopAnswer()
		ev.CallEvent = CallAnswered
		c.emit(ev)
		k.completeCorr = k.startCorr
		if !c.o.ManualComplete {
			k.sendComplete("", nil)
			c.emit(Event{Kind: EventCall, Call: k, CallEvent: CallEstablished})
		}
		return true
	case t == protocol.TypeError && a == protocol.ActionStart:
		ev.Code = f.Header.ErrorCode
		if corr != "" && corr == k.reofferOut {
			k.stopAnswer()
			k.reofferOut = ""
			k.rearmEarly()
			ev.CallEvent = CallReOfferFailed
			break
		}
		if !k.answered {
			k.end()
			ev.CallEvent = CallFailed
			if ev.Code == protocol.CodeRequestTerminated {
				ev.CallEvent = CallEnded
			}
			break
		}
		ev.CallEvent = CallError
	case t == protocol.TypeMessage && a == protocol.ActionComplete:
		if corr != "" && corr == k.earlyOfferIn {
			// It commits our answer to the peer's offer in the early
			// dialog (a phone's UPDATE after a reliable 183), before or
			// after the INVITE's 200: that does not establish the call
			// (the JS SDK does the same).
			k.earlyOfferIn = ""
			return true
		}
		k.established = true
		ev.CallEvent = CallEstablished
	case t == protocol.TypeMessage && a == protocol.ActionShutdown:
		k.end()
		ev.CallEvent = CallEnded
		var sp protocol.ShutdownPayload
		if protocol.DecodePayload(f.Payload, &sp) == nil {
			ev.Media = sp.Media
		}
		if ev.Reason == "" {
			ev.Reason = "shutdown"
			if !k.answered {
				ev.Reason = "cancelled"
			}
		}
	case t == protocol.TypeRequest && a == protocol.ActionPrack:
		r := k.frame(protocol.TypeResponse, protocol.ActionPrack, corr, nil)
		c.send(r)
		ev.CallEvent = CallPrack
	case t == protocol.TypeResponse && a == protocol.ActionPrack:
		ev.CallEvent = CallPrack
	case t == protocol.TypeMessage && a == protocol.ActionTrickle:
		ev.CallEvent, ev.Candidates = CallTrickle, p.Candidates
	case t == protocol.TypeMessage && a == protocol.ActionDTMF:
		ev.CallEvent, ev.Digits, ev.Duration = CallDTMF, p.Digits, p.Duration
	case t == protocol.TypeRequest && a == protocol.ActionTransfer:
		k.transferIn = corr
		ev.CallEvent, ev.ReferTo, ev.Replaces = CallTransfer, f.Header.ReferTo, f.Header.Replaces
	case t == protocol.TypeMessage && a == protocol.ActionTransfer:
		ev.CallEvent, ev.Code = CallTransferProgress, f.Header.ResponseCode
	case t == protocol.TypeMessage && a == protocol.ActionStart:
		ev.CallEvent, ev.SDP = CallRemoteSDP, p.SDP
	case t == protocol.TypeError:
		ev.Code = f.Header.ErrorCode
		ev.CallEvent = CallError
	default:
		return false
	}
	c.emit(ev)
	return true
}
