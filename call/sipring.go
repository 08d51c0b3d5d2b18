package call

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// An incoming SIP call still ringing when its node dies rings on
// (docs/cluster.md "SIP dialogs"): the node that takes its record over
// rebuilds it from the record's INVITE (sipgw.UserAgent.AdoptRinging)
// with the web legs it rang, the sessions' owners routing their frames
// to it, and goes on as the dead node would have: a callee's answer
// sends the 200 (through rtpengine when the call is anchored there), the
// other legs hear the call is off; a decline or the ring timeout
// (SIPSnapshot.RingUntil, the same wall-clock time) sends the failure.
// Over TCP or TLS the responses go on a connection of this node's to the
// INVITE's top Via (the INVITE's was the dead node's).

// RingingContinues reports whether the ringing SIP call of st, which
// another node recorded, can ring on here (RestoreRingingSIP): an
// incoming call whose INVITE came over UDP, TCP or TLS, on a handler
// whose SIP user agent adopts ringing calls. Else it is ended
// (EndEarlySIP).
func (h *Handler) RingingContinues(st sipgw.DialogState) bool {
	return h.far != nil && h.far.ringing != nil && sipgw.RingingMoves(st)
}

// RestoreRingingSIP goes on here with the ringing incoming SIP call of
// st (RingingContinues), recorded by another node, gone: its web legs
// (the snapshot's Web and Forks) whose sessions are among eps ring on,
// and Options.ReplicateSIP hears of the call from now on, under the key
// of the first of them. It sends nothing to the web legs, which rang
// already, nor to SIP. When the call cannot go on (the state unusable,
// the media not resumed), the caller gets 480 or 503 when it can, each
// web leg a shutdown, and the error is returned; ErrLegTaken when a leg
// is in a call here already (another adoption's).
func (h *Handler) RestoreRingingSIP(st sipgw.DialogState, eps ...Endpoint) error {
	var sn SIPSnapshot
	if err := json.Unmarshal(st.App, &sn); err != nil {
		return err
	}
	if sn.Out || st.Invite == nil {
		return errors.New("call: RestoreRingingSIP of a state that is no ringing incoming call")
	}
	if h.far == nil || h.far.ringing == nil {
		return ErrNoAdopt
	}
	c := &Call{target: sn.Target, ringUntil: sn.RingUntil}
	if c.ringUntil.IsZero() {
		c.ringUntil = time.Now().Add(h.opts.RingTimeout)
	}
	var legs []*leg
	for _, ls := range append([]LegSnapshot{sn.Web}, sn.Forks...) {
		for _, ep := range eps {
			if ep == nil || ep.ID() != ls.Session {
				continue
			}
			if h.lookup(ep, ls.Sub) != nil {
				return ErrLegTaken
			}
			l := restoredLeg(c, ep, ls)
			l.state = legRinging
			legs = append(legs, l)
			break
		}
	}
	if len(legs) == 0 {
		return errors.New("call: RestoreRingingSIP with none of the call's web sessions")
	}
	fl := h.newFarLeg(c, false)
	fl.remote = sn.Remote
	fl.logWith("session_id", legs[0].ep.ID(), "subsession_id", legs[0].sub)
	// The legs are the call's before it is built: a second adoption of
	// the call here finds them taken. The adoption may dial the caller's
	// proxy (over TCP or TLS) and resume the media, for up to opTimeout:
	// not under c.mu, which would hold each leg's session (its frames are
	// handled one after the other) that long. What reaches a leg
	// meanwhile waits in c.waiting and is handled, in order, once the
	// call is built (held).
	c.mu.Lock()
	c.adopting = true
	h.mu.Lock()
	for _, l := range legs {
		if h.legs[legKey{l.ep.ID(), l.sub}] != nil {
			h.mu.Unlock()
			c.mu.Unlock()
			return ErrLegTaken
		}
	}
	for _, l := range legs {
		h.legs[legKey{l.ep.ID(), l.sub}] = l
	}
	h.mu.Unlock()
	c.mu.Unlock()
	sc, err := h.far.ringing(st)
	if err == nil {
		if err = fl.resumeMedia(sn.Media); err != nil {
			h.far.wg.Go(func() {
				ctx, cancel := opCtx()
				defer cancel()
				_ = sc.Reject(ctx, protocol.CodeServiceUnavailable, mediaReason)
			})
		}
	}
	c.mu.Lock()
	if err != nil {
		h.mu.Lock()
		for _, l := range legs {
			delete(h.legs, legKey{l.ep.ID(), l.sub})
		}
		h.mu.Unlock()
		fl.rlog().Info("sip adopt", "a ringing SIP call not taken over: its web legs end", "err", err)
		for _, l := range legs {
			out := fl.frameTo(l, protocol.TypeMessage, protocol.ActionShutdown, "")
			out.Header.Reason = RingLostIn
			h.send(l, out, true)
		}
		waiting := c.waiting
		c.adopting, c.waiting = false, nil
		c.mu.Unlock()
		// What waited is handled as for a call that is gone.
		for _, w := range waiting {
			if w.f != nil {
				h.HandleFrame(w.l.ep, w.f)
			}
		}
		return err
	}
	defer c.mu.Unlock()
	h.mu.Lock()
	h.calls[c] = struct{}{}
	h.mu.Unlock()
	for _, l := range legs {
		l.held = recountCall(l.ep)
		h.keepSub(l.sub)
	}
	c.callees = legs
	fl.sc = sc
	fl.logWith("call", sc.ID())
	h.addDialog(fl)
	h.far.wg.Go(fl.read)
	if fl.media != nil {
		fl.media.OnLost(fl.mediaLost)
	}
	// Past its time (the adoption came late), it ends at once.
	c.timer = time.AfterFunc(max(time.Until(c.ringUntil), 0), fl.ringTimeout)
	fl.recordEarlyOver(legs[0], legs[1:], &sn)
	c.held()
	return nil
}

// maxAdoptWaiting bounds the frames that wait for a ringing call's
// adoption (Call.waiting); past it a request is answered 503.
const maxAdoptWaiting = 64

// adoptWait is what reached a leg of a call being adopted: its frame f,
// or (f nil) its session's end.
type adoptWait struct {
	l *leg
	f *protocol.Frame
}

// wait queues f (nil: the session's end) of l behind the adoption of
// l's call, under way. c.mu is held.
func (h *Handler) wait(l *leg, f *protocol.Frame) {
	c := l.call
	if f != nil && len(c.waiting) >= maxAdoptWaiting {
		h.rlog.Warn("sip adopt", "call frame refused: too many wait for its call's adoption", "session_id", l.ep.ID(), "subsession_id", l.sub)
		if f.Control.Type == protocol.TypeRequest {
			_, _ = l.ep.Send(errorFrame(f, protocol.CodeServiceUnavailable, "too many frames wait for the call's adoption"), false)
		}
		return
	}
	c.waiting = append(c.waiting, adoptWait{l, f})
}

// held handles what waited for the call's adoption, now built, in the
// order it came; what comes after waits for c.mu, held throughout.
func (c *Call) held() {
	waiting := c.waiting
	c.adopting, c.waiting = false, nil
	for _, w := range waiting {
		if c.ended {
			return
		}
		if w.f == nil {
			c.far.sessionEnded(w.l)
		} else {
			c.far.frame(w.l, w.f)
		}
	}
}

// ringingAdopter is a SIP network that goes on with ringing incoming
// calls another node recorded (*sipgw.UserAgent).
type ringingAdopter interface {
	AdoptRinging(ctx context.Context, st sipgw.DialogState, o *sipgw.AdoptOptions) (*sipgw.Call, error)
}

// adoptRingingVia makes the ringing-adopt function of a SIP network.
func adoptRingingVia(net SIP) func(sipgw.DialogState) (sipCall, error) {
	a, ok := net.(ringingAdopter)
	if !ok {
		return nil
	}
	return func(st sipgw.DialogState) (sipCall, error) {
		// Over TCP or TLS the adoption dials the caller's proxy.
		ctx, cancel := opCtx()
		defer cancel()
		sc, err := a.AdoptRinging(ctx, st, nil)
		if err != nil {
			return nil, err
		}
		return sipgwCall{sc}, nil
	}
}
