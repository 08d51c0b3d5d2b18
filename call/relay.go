package call

import (
	"strconv"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// The relay: calls between web sessions, forked to every live session of
// the callee (first answer wins).

// relay is the far side of a call between web sessions: other legs of
// the same Call. Its methods are the relay's state machine; the Handler
// it embeds holds the call and leg tables they share with SIP calls.
type relay struct{ *Handler }

func (h relay) sessionEnded(l *leg) {
	defer h.replicateLocked(l.call)
	h.leave(l, protocol.CodeTemporarilyUnavail, nil)
}

func (h relay) frame(l *leg, f *protocol.Frame) {
	defer h.replicateLocked(l.call)
	// Each frame the call sends the other sessions now relays f, sent
	// again by l's client when its node died before writing the state
	// that processed it (docs/cluster.md, "A relay is taken once").
	defer l.call.relaying(endpoint.CallOrigin(l.ep, f))()
	switch f.Header.Action {
	case protocol.ActionStart:
		switch f.Control.Type {
		case protocol.TypeRequest:
			h.reoffer(l, f)
		case protocol.TypeResponse:
			h.response(l, f)
		case protocol.TypeError:
			h.rejected(l, f)
		}
	case protocol.ActionComplete:
		h.complete(l, f)
	case protocol.ActionShutdown:
		h.shutdown(l, f)
	case protocol.ActionPrack:
		if f.Control.Type == protocol.TypeRequest {
			// Between browsers nothing is reliable-provisional: the
			// gateway answers the PRACK itself, without response_code
			// (a 200 without SDP would make wsc.js refuse it).
			l.ep.Send(&protocol.Frame{
				Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall,
					SubsessionID: l.sub, CorrelationID: protocol.ClientCorrelation(f), MessageState: protocol.StateFinal},
				Header: protocol.Header{Action: protocol.ActionPrack, Initiator: f.Header.Initiator, Target: f.Header.Target},
			}, false)
		}
	case protocol.ActionTrickle, protocol.ActionDTMF:
		h.passMessage(l, f)
	case protocol.ActionTransfer:
		h.transferFrame(l, f)
	default:
		h.declaredAnswer(l, f) // a declared action's (template.go)
	}
}

func (h *Handler) startCall(ep Endpoint, f *protocol.Frame) {
	var p protocol.CallPayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		ep.Send(errorFrame(f, protocol.CodeOf(err), protocol.ReasonOf(err)), false)
		return
	}
	if !protocol.HasSDP(p.SDP) {
		ep.Send(errorFrame(f, protocol.CodeNotAcceptableHere, "start needs an SDP offer"), false)
		return
	}
	if f.Header.Replaces != "" {
		h.startReplacing(ep, f, p)
		return
	}
	d := endpoint.Route(ep, routing.Call, f.Header.Target, f.Header.Ext)
	switch d.Action {
	case routing.ActionReject:
		ep.Send(errorFrame(f, d.Code, d.Reason), false)
	case routing.ActionSIP:
		if h.far == nil {
			ep.Send(errorFrame(f, protocol.CodeServiceUnavailable, "no SIP side for trunk "+d.Trunk), false)
			return
		}
		h.dialSIP(ep, f, p, d)
	case routing.ActionWeb:
		relay{h}.start(ep, f, d.Target)
	default:
		sip, err := h.routesToSIP(f.Header.Target)
		if err != nil {
			ep.Send(errorFrame(f, protocol.CodeTemporarilyUnavail, endpoint.ErrLookup), false)
			return
		}
		if sip {
			h.dialSIP(ep, f, p, d)
			return
		}
		relay{h}.start(ep, f, f.Header.Target)
	}
}

// start rings every other live session of target for the start f.
func (h relay) start(ep Endpoint, f *protocol.Frame, target string) {
	all, err := endpoint.Find(h.dir, target)
	if err != nil {
		ep.Send(errorFrame(f, protocol.CodeTemporarilyUnavail, endpoint.ErrLookup), false)
		return
	}
	var eps []Endpoint
	for _, e := range all {
		if e.ID() != ep.ID() {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		code, reason := protocol.CodeNotFound, "unknown target"
		if h.dir.Known(target) {
			code, reason = protocol.CodeTemporarilyUnavail, "target offline"
		}
		ep.Send(errorFrame(f, code, reason), false)
		return
	}
	h.ring(ep, f, target, eps, "")
}

// ring starts the call of the start f, ringing eps; replaces, when set,
// is the subsession of the one callee's call this one replaces (an
// attended transfer, attended.go).
func (h relay) ring(ep Endpoint, f *protocol.Frame, target string, eps []Endpoint, replaces string) {
	if !acquireCall(ep) {
		ep.Send(errorFrame(f, protocol.CodeServiceUnavailable, "too many calls"), false)
		return
	}
	// The callees' quotas before the call exists: a reservation waits on
	// the store, and a callee rung before the last one's wait would
	// answer into a call whose lock the wait held.
	held := acquireEach(eps)
	c := &Call{target: target, far: h}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.caller = &leg{call: c, ep: ep, sub: f.Control.SubsessionID, startCorr: protocol.ClientCorrelation(f), held: true}
	h.mu.Lock()
	h.calls[c] = struct{}{}
	h.legs[legKey{ep.ID(), c.caller.sub}] = c.caller
	h.mu.Unlock()
	for i, e := range eps {
		l := &leg{call: c, ep: e, sub: h.newSub()}
		h.mu.Lock()
		h.legs[legKey{e.ID(), l.sub}] = l
		h.mu.Unlock()
		c.callees = append(c.callees, l)
		if !held[i] {
			l.state, l.code = legFailed, protocol.CodeBusyHere
			continue
		}
		l.held = true
		out := &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: l.sub},
			Header: protocol.Header{Action: protocol.ActionStart, Initiator: ep.Identity(), Target: e.Identity(),
				Replaces: replaces, Ext: f.Header.Ext},
			Payload: f.Payload,
		}
		seq, err := endpoint.Relay(e, out, true, endpoint.OriginOf(ep, f))
		if err != nil {
			l.state, l.code = legFailed, protocol.CodeTemporarilyUnavail
			continue
		}
		l.startCorr = "s" + strconv.FormatUint(seq, 10)
	}
	c.ringUntil = time.Now().Add(h.opts.RingTimeout)
	c.timer = time.AfterFunc(h.opts.RingTimeout, func() { h.ringTimeout(c) })
	h.log.Debug("call started", "session_id", ep.ID(), "subsession_id", c.caller.sub, "legs", len(eps))
	h.settle(c)
	// Recorded from its start, so that it rings on if its host dies.
	h.replicateLocked(c)
}

func (h relay) ringTimeout(c *Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.winner != nil {
		return
	}
	h.end(c)
	h.failCaller(c, protocol.CodeTemporarilyUnavail, "No answer")
	h.cancelLegs(c, nil)
}

// response handles a response/start from either side.
func (h relay) response(l *leg, f *protocol.Frame) {
	c := l.call
	final := f.Control.MessageState == protocol.StateFinal || f.Header.ResponseCode >= 200
	if l != c.caller && c.winner == nil {
		// The callee answers the initial offer.
		if l.state != legRinging {
			return
		}
		if !final {
			code := f.Header.ResponseCode
			if code == 0 {
				code = protocol.CodeRinging
			}
			out := h.frameTo(c.caller, protocol.TypeResponse, protocol.ActionStart, c.caller.startCorr)
			out.Control.MessageState = protocol.StateSubsequent
			out.Header.ResponseCode, out.Header.Reason = code, protocol.Reason(code)
			out.Header.Ext = f.Header.Ext
			if code == protocol.CodeSessionProgress {
				out.Payload = f.Payload
			}
			h.send(c.caller, out, false)
			return
		}
		var p protocol.CallPayload
		if protocol.DecodePayload(f.Payload, &p) != nil || !protocol.HasSDP(p.SDP) {
			h.send(l, errorFrame(f, protocol.CodeBadRequest, "an answer needs SDP"), false)
			return
		}
		c.winner, l.state = l, legAnswered
		c.answer = answerSnapshot(f, l.trickle)
		l.answerCorr = f.Control.CorrelationID
		if c.timer != nil {
			c.timer.Stop()
		}
		h.send(c.caller, h.answerFrame(c, f), false)
		c.caller.state = legAnswered
		// First answer wins; the other forks are told to stop ringing.
		h.cancelLegs(c, l)
		for _, t := range l.trickle {
			tr := h.frameTo(c.caller, protocol.TypeMessage, protocol.ActionTrickle, "")
			tr.Payload = t
			h.send(c.caller, tr, false)
		}
		l.trickle = nil
		return
	}
	if l != c.caller && l != c.winner {
		return
	}
	// An answer to a re-offer: map it back to the side that made it.
	other := h.peer(l)
	if other == nil || other.reoffer == nil || other.reoffer.there != f.Control.CorrelationID {
		if l == c.winner && final && f.Control.CorrelationID == l.startCorr {
			h.answerAgain(l, f)
		}
		return
	}
	if !final {
		return
	}
	l.answerCorr = f.Control.CorrelationID
	out := h.frameTo(other, protocol.TypeResponse, protocol.ActionStart, other.reoffer.here)
	out.Control.MessageState = protocol.StateFinal
	out.Header.ResponseCode, out.Header.Reason = protocol.CodeOK, "OK"
	out.Header.Ext = f.Header.Ext
	out.Payload = f.Payload
	other.reoffer = nil
	h.send(other, out, false)
}

// answerAgain relays the callee's answer f to the caller again: sent
// again by a client whose node died before writing its state, it finds
// the call answered here when the host died between writing the
// answered record (answerAhead) and the caller's having the answer, or
// when this node adopted such a call. The caller takes it once (its
// relays are marked by origin, docs/cluster.md "A relay is taken once"):
// one who had it gets nothing. c.mu is held.
func (h relay) answerAgain(l *leg, f *protocol.Frame) {
	h.send(l.call.caller, h.answerFrame(l.call, f), false)
}

// answerFrame is the caller's 200 of c for the callee's answer f.
func (h relay) answerFrame(c *Call, f *protocol.Frame) *protocol.Frame {
	out := h.frameTo(c.caller, protocol.TypeResponse, protocol.ActionStart, c.caller.startCorr)
	out.Control.MessageState = protocol.StateFinal
	out.Header.ResponseCode, out.Header.Reason = protocol.CodeOK, "OK"
	out.Header.Initiator, out.Header.Target = c.caller.ep.Identity(), c.target
	out.Header.Ext = f.Header.Ext
	out.Payload = f.Payload
	return out
}

// peer returns the other side of an answered call, or of a ringing call
// from the caller's point of view when exactly one leg rings.
func (h relay) peer(l *leg) *leg {
	c := l.call
	if l == c.caller {
		return c.winner
	}
	if l == c.winner {
		return c.caller
	}
	return nil
}

// rejected handles an error/start from either side.
func (h relay) rejected(l *leg, f *protocol.Frame) {
	c := l.call
	code := f.Header.ErrorCode
	if l != c.caller && c.winner == nil {
		if l.state != legRinging {
			return
		}
		l.state, l.code = legFailed, code
		if code >= 600 {
			// A global failure (603 Decline, 600 Busy Everywhere) ends
			// every fork.
			h.end(c)
			h.failCaller(c, code, f.Header.Reason)
			h.cancelLegs(c, l)
			return
		}
		h.settle(c)
		return
	}
	other := h.peer(l)
	if other == nil || other.reoffer == nil || other.reoffer.there != f.Control.CorrelationID {
		return
	}
	out := h.frameTo(other, protocol.TypeError, protocol.ActionStart, other.reoffer.here)
	out.Header.ErrorCode, out.Header.Reason = code, f.Header.Reason
	if out.Header.Reason == "" {
		out.Header.Reason = protocol.Reason(code)
	}
	other.reoffer = nil
	h.send(other, out, false)
}

// settle ends an unanswered call once every fork has failed, reporting
// the best failure: busy over the rest (RFC 3261 section 16.7 picks the
// most telling response; for browsers busy is what the caller needs).
func (h relay) settle(c *Call) {
	if c.winner != nil || c.ended {
		return
	}
	best := 0
	for _, l := range c.callees {
		if l.state == legRinging {
			return
		}
		if best == 0 || l.code == protocol.CodeBusyHere {
			best = l.code
		}
	}
	if best == 0 {
		best = protocol.CodeTemporarilyUnavail
	}
	h.end(c)
	h.failCaller(c, best, "")
}

// cancelLegs tells every ringing callee leg but keep that the call is off.
func (h relay) cancelLegs(c *Call, keep *leg) {
	for _, l := range c.callees {
		if l == keep || l.state == legFailed {
			continue
		}
		corr := l.startCorr
		self := false
		if l.state == legAnswered {
			corr, self = "", true
		}
		h.send(l, h.frameTo(l, protocol.TypeMessage, protocol.ActionShutdown, corr), self)
		l.state = legFailed
	}
}

func (h relay) reoffer(l *leg, f *protocol.Frame) {
	c := l.call
	other := h.peer(l)
	if c.winner == nil || other == nil {
		// No early-dialog updates between browsers: the offer is still
		// outstanding.
		l.ep.Send(errorFrame(f, protocol.CodeRequestPending, "the call is not established"), false)
		return
	}
	var p protocol.CallPayload
	if protocol.DecodePayload(f.Payload, &p) != nil || !protocol.HasSDP(p.SDP) {
		l.ep.Send(errorFrame(f, protocol.CodeNotAcceptableHere, "a re-offer needs SDP"), false)
		return
	}
	if l.reoffer != nil && l.reoffer.here == protocol.ClientCorrelation(f) {
		// This re-offer, sent again by a client whose node died before
		// writing its state: relayed already, its answer comes.
		return
	}
	if l.reoffer != nil || other.reoffer != nil {
		// Glare: an offer is already outstanding in one direction.
		l.ep.Send(errorFrame(f, protocol.CodeRequestPending, "Glare"), false)
		return
	}
	out := h.frameTo(other, protocol.TypeRequest, protocol.ActionStart, "")
	out.Header.Initiator, out.Header.Target = l.ep.Identity(), other.ep.Identity()
	out.Header.Ext = f.Header.Ext
	out.Payload = f.Payload
	there, err := h.sendRequest(other, out)
	if err != nil {
		l.ep.Send(errorFrame(f, protocol.CodeTemporarilyUnavail, peerUnreachable), false)
		return
	}
	l.reoffer = &pending{here: protocol.ClientCorrelation(f), there: there}
}

func (h relay) complete(l *leg, f *protocol.Frame) {
	other := h.peer(l)
	if other == nil || other.answerCorr == "" {
		return
	}
	out := h.frameTo(other, protocol.TypeMessage, protocol.ActionComplete, other.answerCorr)
	out.Payload = f.Payload
	out.Header.Ext = f.Header.Ext
	other.answerCorr = ""
	h.send(other, out, false)
}

// shutdown handles a shutdown f from l's side.
func (h relay) shutdown(l *leg, f *protocol.Frame) {
	// A ringing callee that hangs up instead of declining fails its fork
	// as a decline would.
	h.leave(l, protocol.CodeDecline, f.Header.Ext)
}

// leave ends l's part in its call: before the answer the caller's leaving
// cancels every fork; after it either side's leaving ends the call toward
// the other; a ringing callee's leaving fails its fork with code, and the
// caller hears of it (as an error: wsc.js ignores a shutdown before the
// answer) once no fork is left; ext are the extension headers of l's
// shutdown, passed to the other side. c.mu is held.
func (h relay) leave(l *leg, code int, ext []protocol.Ext) {
	c := l.call
	switch {
	case l == c.caller && c.winner == nil:
		h.end(c)
		h.cancelLegs(c, nil)
	case l == c.caller || l == c.winner:
		other := h.peer(l)
		out := h.frameTo(other, protocol.TypeMessage, protocol.ActionShutdown, "")
		out.Header.Initiator, out.Header.Target = l.ep.Identity(), other.ep.Identity()
		out.Header.Ext = ext
		h.end(c)
		h.send(other, out, true)
	case l.state == legRinging:
		l.state, l.code = legFailed, code
		h.settle(c)
	}
}

func (h relay) passMessage(l *leg, f *protocol.Frame) {
	c := l.call
	var to []*leg
	switch {
	case l == c.caller && c.winner == nil:
		for _, x := range c.callees {
			if x.state == legRinging {
				to = append(to, x)
			}
		}
	case l == c.caller || l == c.winner:
		to = []*leg{h.peer(l)}
	case f.Header.Action == protocol.ActionTrickle && l.state == legRinging:
		// A forked callee's candidates mean nothing to the caller
		// unless that fork wins.
		if len(l.trickle) < maxBufferedTrickle {
			l.trickle = append(l.trickle, f.Payload)
		}
		return
	}
	for _, x := range to {
		out := h.frameTo(x, protocol.TypeMessage, f.Header.Action, "")
		out.Header.Initiator, out.Header.Target = l.ep.Identity(), x.ep.Identity()
		out.Header.Ext = f.Header.Ext
		out.Payload = f.Payload
		h.send(x, out, false)
	}
}

// transferFrame relays a blind transfer (ext) and its answer. Only a
// jsonrtc client can act on one.
func (h relay) transferFrame(l *leg, f *protocol.Frame) {
	other := h.peer(l)
	if f.Control.Type == protocol.TypeRequest {
		if other == nil {
			l.ep.Send(errorFrame(f, protocol.CodeRequestPending, "the call is not established"), false)
			return
		}
		if other.ep.Oracle() {
			l.ep.Send(errorFrame(f, protocol.CodeMethodNotAllowed, "the peer cannot be transferred"), false)
			return
		}
		out := h.frameTo(other, protocol.TypeRequest, protocol.ActionTransfer, "")
		out.Header.Initiator, out.Header.Target = l.ep.Identity(), other.ep.Identity()
		out.Header.ReferTo = f.Header.ReferTo
		out.Header.Ext = f.Header.Ext
		if f.Header.Replaces != "" {
			// The token HandleFrame resolved (attended.go), for this
			// peer only.
			out.Header.Replaces = f.Header.Replaces
			h.grantTo(f.Header.Replaces, other.ep)
		}
		there, err := h.sendRequest(other, out)
		if err != nil {
			l.ep.Send(errorFrame(f, protocol.CodeTemporarilyUnavail, peerUnreachable), false)
			return
		}
		l.transfer = &pending{here: protocol.ClientCorrelation(f), there: there}
		return
	}
	if other == nil || other.transfer == nil || other.transfer.there != f.Control.CorrelationID {
		return
	}
	out := h.frameTo(other, f.Control.Type, protocol.ActionTransfer, other.transfer.here)
	out.Header.ResponseCode, out.Header.ErrorCode, out.Header.Reason = f.Header.ResponseCode, f.Header.ErrorCode, f.Header.Reason
	out.Header.Ext = f.Header.Ext
	// An accepted transfer stays known until the new call's final
	// status (message/transfer, docs/protocol.md §5.12) is relayed.
	if f.Control.Type == protocol.TypeError || f.Control.Type == protocol.TypeMessage && f.Header.ResponseCode >= 200 {
		other.transfer = nil
	}
	h.send(other, out, false)
}

// end forgets a call. c.mu is held. It is called before the frames that
// tell the peers, so that whoever hears of the end finds it accounted for.
func (h relay) end(c *Call) {
	c.ended = true
	if c.timer != nil {
		c.timer.Stop()
	}
	h.mu.Lock()
	delete(h.calls, c)
	h.signalIdleLocked()
	delete(h.legs, legKey{c.caller.ep.ID(), c.caller.sub})
	for _, l := range c.callees {
		delete(h.legs, legKey{l.ep.ID(), l.sub})
	}
	h.dropGrantsLocked(c)
	h.mu.Unlock()
	h.replicateLocked(c)
	for _, l := range append([]*leg{c.caller}, c.callees...) {
		if l.held {
			l.held = false
			releaseCall(l.ep)
		}
	}
}
