package call

import (
	"slices"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Attended transfer (docs/protocol.md §5.12; RFC 5589 section 7, RFC
// 3891). The transferor A, in a call with B and a consult call with C,
// sends transfer on B's call with replaces = its consult subsession. The
// gateway never takes a client's word for another session's call: it
// resolves the subsession in A's own session and hands B a token that
// names C's side of the consult call as a SIP dialog would (Call-ID,
// to-tag = C's, from-tag = A's):
//   - C on SIP: the gateway's real dialog with C; B's new call carries it
//     as a Replaces header, and C (not the gateway) ends its old dialog.
//   - C on the web: a dialog identity the gateway makes for the consult
//     call (a grant), so that B's INVITE with Replaces coming back
//     through the proxy, or B's web start carrying the token, finds it.
// C's client gets a start whose replaces names its consult subsession;
// it answers at once and ends that call itself. A SIP B gets a REFER
// whose Refer-To carries the token; a web B gets it on its transfer
// request and sends it back on the start of its new call. An INVITE
// with Replaces from SIP is matched to a grant or to a SIP dialog of the
// gateway, and gets 481 when it names neither (RFC 3891 section 3).

// grant is a consult call an attended transfer may replace.
type grant struct {
	rep  sipgw.Replaces // the dialog, as C sees it
	call *Call          // the consult call
	// web is C's leg when C is a web session; nil when C is on SIP.
	web *leg
	// to is the web transferee's session the token was handed to; ""
	// while none was (a SIP transferee's INVITE is matched by dialog).
	to string
}

// resolveReplaces turns the replaces of A's transfer request f (A's
// consult subsession) into the token of the consult call's far party;
// false when it answered A with an error instead.
func (h *Handler) resolveReplaces(ep Endpoint, l *leg, f *protocol.Frame) (*protocol.Frame, bool) {
	cl := h.lookup(ep, f.Header.Replaces)
	switch {
	case cl == nil:
		ep.Send(errorFrame(f, protocol.CodeNoSuchCall, "replaces names no call of this session"), false)
		return nil, false
	case cl.call == l.call:
		ep.Send(errorFrame(f, protocol.CodeBadRequest, "a call cannot replace itself"), false)
		return nil, false
	}
	rep, ok := h.consultDialog(cl)
	if !ok {
		ep.Send(errorFrame(f, protocol.CodeRequestPending, "the consult call is not established"), false)
		return nil, false
	}
	g := *f
	g.Header.Replaces = rep.String()
	return &g, true
}

// consultDialog names the far party of cl's answered call as a dialog
// C would recognise, making a grant for it; false when the call is not
// established (or is over).
func (h *Handler) consultDialog(cl *leg) (sipgw.Replaces, bool) {
	c := cl.call
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return sipgw.Replaces{}, false
	}
	if c.grant != nil {
		// Again (a transfer retried, or refused): the same token, listed
		// again if a start already used it.
		h.grant(c.grant)
		return c.grant.rep, true
	}
	gr := &grant{call: c}
	switch far := c.far.(type) {
	case relay:
		peer := far.peer(cl)
		if peer == nil || c.winner == nil {
			return sipgw.Replaces{}, false
		}
		gr.web = peer
		gr.rep = sipgw.Replaces{CallID: newDialogToken(), ToTag: newDialogToken(), FromTag: newDialogToken()}
	case *farLeg:
		if far.web() != cl || !far.phase.answered() || far.sc == nil {
			return sipgw.Replaces{}, false
		}
		k := far.sc.Keys()
		gr.rep = sipgw.Replaces{CallID: k.CallID, ToTag: k.RemoteTag, FromTag: k.LocalTag}
		if far.out {
			gr.rep.ToTag = far.remoteTag
		}
		if gr.rep.ToTag == "" || gr.rep.FromTag == "" {
			return sipgw.Replaces{}, false
		}
	default:
		return sipgw.Replaces{}, false
	}
	c.grant = gr
	h.grant(gr)
	return gr.rep, true
}

// grant records gr. h.mu is not held.
func (h *Handler) grant(gr *grant) {
	h.mu.Lock()
	h.grants[gr.rep.CallID] = gr
	h.mu.Unlock()
}

// grantTo hands the token to the web transferee ep: only its start may
// use it. h.mu is not held.
func (h *Handler) grantTo(token string, ep Endpoint) {
	rep, err := sipgw.ParseReplaces(token)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if gr := h.grants[rep.CallID]; gr != nil && gr.rep == rep {
		gr.to = ep.ID()
	}
}

// dropGrantsLocked forgets the grants of the ended call c. h.mu is held.
func (h *Handler) dropGrantsLocked(c *Call) {
	for id, gr := range h.grants {
		if gr.call == c {
			delete(h.grants, id)
		}
	}
}

// takeGrant returns (and forgets) the grant the web transferee ep's
// token names, nil when it names none given to ep.
func (h *Handler) takeGrant(ep Endpoint, token string) *grant {
	rep, err := sipgw.ParseReplaces(token)
	if err != nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	gr := h.grants[rep.CallID]
	if gr == nil || gr.rep != rep || gr.to != ep.ID() {
		return nil
	}
	delete(h.grants, rep.CallID)
	return gr
}

// replacedLeg returns the endpoint and subsession of C's web leg l of a
// consult call; false when that call is over.
func replacedLeg(l *leg) (Endpoint, string, bool) {
	c := l.call
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil, "", false
	}
	return l.ep, l.sub, true
}

// startReplacing starts the web transferee's new call of an attended
// transfer: its start f carries the token of the consult call it
// replaces.
func (h *Handler) startReplacing(ep Endpoint, f *protocol.Frame, p protocol.CallPayload) {
	gr := h.takeGrant(ep, f.Header.Replaces)
	if gr == nil {
		ep.Send(errorFrame(f, protocol.CodeNoSuchCall, "replaces names no call"), false)
		return
	}
	if gr.web == nil {
		// A SIP transferor's REFER may name its consult call with a web
		// user of this gateway: the gateway's own dialog.
		gr.web = h.matchReplaces(gr.rep)
	}
	if gr.web == nil {
		if h.far == nil {
			ep.Send(errorFrame(f, protocol.CodeServiceUnavailable, "no SIP side"), false)
			return
		}
		// C is on SIP: the INVITE carries Replaces and C ends its dialog
		// with the gateway (RFC 3891 section 3).
		d := endpoint.Route(ep, routing.Call, f.Header.Target, f.Header.Ext)
		if d.Action == routing.ActionReject {
			ep.Send(errorFrame(f, d.Code, d.Reason), false)
			return
		}
		if d.Target == "" {
			d.Target = f.Header.Target
		}
		rep := gr.rep
		h.dialSIPReplacing(ep, f, p, d, &rep)
		return
	}
	target, sub, ok := replacedLeg(gr.web)
	if !ok {
		ep.Send(errorFrame(f, protocol.CodeNoSuchCall, "the call to replace is over"), false)
		return
	}
	if target.ID() == ep.ID() {
		ep.Send(errorFrame(f, protocol.CodeBadRequest, "a call cannot replace one of its own session"), false)
		return
	}
	relay{h}.ring(ep, f, target.Identity(), []Endpoint{target}, sub)
}

// matchReplaces finds the web leg an incoming INVITE's Replaces names:
// a grant's web party, or the web side of one of the gateway's SIP
// dialogs (a SIP transferor's consult call to a web user). nil: none.
func (h *Handler) matchReplaces(rep sipgw.Replaces) *leg {
	h.mu.Lock()
	gr := h.grants[rep.CallID]
	fls := slices.Clone(h.dialogs[rep.CallID])
	h.mu.Unlock()
	if gr != nil && gr.web != nil && gr.rep.ToTag == rep.ToTag && gr.rep.FromTag == rep.FromTag {
		return gr.web
	}
	for _, fl := range fls {
		if l := fl.names(rep); l != nil {
			return l
		}
	}
	return nil
}

// names returns the web leg of fl's answered call when rep names its
// SIP dialog with the gateway as the receiver (to-tag ours, from-tag the
// peer's), else nil.
func (fl *farLeg) names(rep sipgw.Replaces) *leg {
	c := fl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || fl.sc == nil || !fl.phase.answered() {
		return nil
	}
	// The gateway is C here: to-tag is its own tag, from-tag the peer's.
	k := fl.sc.Keys()
	remote := k.RemoteTag
	if fl.out {
		remote = fl.remoteTag
	}
	if k.CallID != rep.CallID || k.LocalTag != rep.ToTag || remote != rep.FromTag {
		return nil
	}
	return fl.web()
}

// addDialog indexes the SIP call of fl by Call-ID, for INVITEs with
// Replaces. fl.sc is set.
func (h *Handler) addDialog(fl *farLeg) {
	id := fl.sc.Keys().CallID
	h.mu.Lock()
	// A call the gateway places to itself through the proxy has both
	// its legs under one Call-ID: their tags tell them apart.
	h.dialogs[id] = append(h.dialogs[id], fl)
	h.mu.Unlock()
}

// dropDialog forgets fl's SIP call and the grants of its call.
func (h *Handler) dropDialog(fl *farLeg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fl.sc != nil {
		id := fl.sc.Keys().CallID
		fls := slices.DeleteFunc(h.dialogs[id], func(x *farLeg) bool { return x == fl })
		if len(fls) == 0 {
			delete(h.dialogs, id)
		} else {
			h.dialogs[id] = fls
		}
	}
	h.dropGrantsLocked(fl.c)
}
