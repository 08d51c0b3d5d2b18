package call

import (
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
// An INVITE over TCP or TLS cannot be answered from another node: such a
// call is ended as before (EndEarlySIP).

// RingingContinues reports whether the ringing SIP call of st, which
// another node recorded, can ring on here (RestoreRingingSIP): an
// incoming call whose INVITE came over UDP, on a handler whose SIP user
// agent adopts ringing calls. Else it is ended (EndEarlySIP).
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
	// The legs are the call's before it is built, under c.mu, which a
	// frame of theirs waits for: a second adoption of the call here
	// finds them taken.
	c.mu.Lock()
	defer c.mu.Unlock()
	h.mu.Lock()
	for _, l := range legs {
		if h.legs[legKey{l.ep.ID(), l.sub}] != nil {
			h.mu.Unlock()
			return ErrLegTaken
		}
	}
	for _, l := range legs {
		h.legs[legKey{l.ep.ID(), l.sub}] = l
	}
	h.mu.Unlock()
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
		return err
	}
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
	return nil
}

// ringingAdopter is a SIP network that goes on with ringing incoming
// calls another node recorded (*sipgw.UserAgent).
type ringingAdopter interface {
	AdoptRinging(st sipgw.DialogState, o *sipgw.AdoptOptions) (*sipgw.Call, error)
}

// adoptRingingVia makes the ringing-adopt function of a SIP network.
func adoptRingingVia(net SIP) func(sipgw.DialogState) (sipCall, error) {
	a, ok := net.(ringingAdopter)
	if !ok {
		return nil
	}
	return func(st sipgw.DialogState) (sipCall, error) {
		sc, err := a.AdoptRinging(st, nil)
		if err != nil {
			return nil, err
		}
		return sipgwCall{sc}, nil
	}
}
