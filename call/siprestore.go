package call

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Replicated SIP calls (docs/cluster.md, "SIP dialogs"): a confirmed
// call between a web session and SIP is its dialog's state
// (sipgw.DialogState) and the web side's part, the SIPSnapshot the
// handler puts in the state's App; Options.ReplicateSIP hears each
// change and the end, and Options.WriteAheadSIP each request of ours
// before it leaves, so that another node (or this one, restarted)
// adopts the dialog (sipgw.UserAgent.Adopt: a target refresh with its
// own Contact) and goes on with the call (RestoreSIP) when this one
// dies. A ringing or early call's INVITE transaction cannot move, but an
// outgoing one's INVITE is recorded from the dial, and an incoming one's
// while it rings (sipgw.Call.EarlyState), one web session or several:
// the node that finds the record ends an outgoing one (EndSIP,
// EndEarlySIP: a CANCEL) rather than leave the phone ringing, and rings
// an incoming one on, answering its INVITE from the record
// (RestoreRingingSIP, sipring.go; over TCP or TLS it cannot, and ends
// it: EndEarlySIP).

// SIPSnapshot is the web side of a confirmed SIP call as another node
// rebuilds it.
type SIPSnapshot struct {
	// Out: the web leg called SIP (else SIP called it).
	Out bool `json:"out,omitempty"`
	// Target is the call's target as the caller named it; Remote the SIP
	// party as the web side sees it.
	Target string      `json:"target"`
	Remote string      `json:"remote,omitempty"`
	Web    LegSnapshot `json:"web"`
	// Forks are the other web legs an incoming call rings besides Web,
	// while it rings several sessions: one record holds the call, under
	// Web's key, and each fork's key points at it (one record per fork
	// would have each node that finds one end the call).
	Forks []LegSnapshot `json:"forks,omitempty"`
	// Media is the call's session in rtpengine, which the adopter goes
	// on with (nil: not anchored).
	Media *rtpengine.SessionState `json:"media,omitempty"`
	// Route is what the web leg's routing read of its session: an
	// outgoing call's header rules are bound again with it when the
	// session is gone (EndSIP).
	Route endpoint.RouteBasis `json:"route,omitzero"`
	// Pending are the web leg's requests under way toward SIP (notePending).
	Pending []PendingRequest `json:"pending,omitempty"`
	// RingUntil is when an incoming call ringing ends unanswered (its
	// ring timer, wall clock: it goes on on another node, sipring.go).
	RingUntil time.Time `json:"ring_until,omitzero"`
}

// PendingRequest is a web leg's request under way toward SIP, by its
// action and correlation: a re-offer (start) until its answer, a
// transfer until the REFER's.
type PendingRequest struct {
	Action protocol.Action `json:"action"`
	Corr   string          `json:"corr"`
}

// pendingReasons are the reasons of the errors an adopter sends the web
// leg for its requests under way at the death of the call's node: their
// transactions went with it. The adopter's target refresh offers the last
// completed exchange's SDP again, so a re-offer's is undone; a REFER may
// have reached the peer, which may be transferring.
var pendingReasons = map[protocol.Action]string{
	protocol.ActionStart:    "the call moved to another node before the re-offer was answered: the call goes on as before it",
	protocol.ActionTransfer: "the call moved to another node before the transfer was answered: its outcome is unknown",
}

// notePending puts the web leg's requests under way toward SIP (its
// re-offer until answered, its transfer until the REFER's answer) in the
// dialog's App, and so in the call's record: the write-ahead of the
// request's CSeq carries it before the request leaves. The node that
// adopts the call after this one's death fails them to the web side
// (failPending): their transactions went with this node, and the web
// side would otherwise wait for its request timeout. c.mu is held.
func (fl *farLeg) notePending() {
	dc, ok := fl.sc.(dialogCall)
	if !fl.recording || !ok {
		return
	}
	var p []PendingRequest
	if fl.webReoffer != "" {
		p = append(p, PendingRequest{Action: protocol.ActionStart, Corr: fl.webReoffer})
	}
	if to := fl.transferOut; to != nil && !to.answered {
		p = append(p, PendingRequest{Action: protocol.ActionTransfer, Corr: to.corr})
	}
	if slices.Equal(p, fl.snap.Pending) {
		return
	}
	fl.snap.Pending = p
	app, _ := json.Marshal(fl.snap)
	dc.SetApp(app)
}

// failPending tells the web leg w that its requests of p, under way at
// the death of the call's previous node, failed. c.mu is held.
func (fl *farLeg) failPending(w *leg, p []PendingRequest) {
	for _, r := range p {
		reason, ok := pendingReasons[r.Action]
		if !ok {
			continue // a later release's action: nothing to tell
		}
		out := fl.frameTo(w, protocol.TypeError, r.Action, r.Corr)
		out.Header.ErrorCode, out.Header.Reason = protocol.CodeServiceUnavailable, reason
		fl.h.send(w, out, false)
	}
}

// SIPDialog is the dialog state of a SIP call, as its record carries it
// (sipgw's): the gateway keeps it for the handler without knowing SIP.
type SIPDialog = sipgw.DialogState

// ErrNoAdopt is RestoreSIP's answer when the handler has no SIP user
// agent that adopts dialogs.
var ErrNoAdopt = errors.New("call: no SIP user agent to adopt the dialog")

// dialogCall is a SIP call whose dialog can be recorded and handed over
// (*sipgw.Call; a unit test's fake may be one).
type dialogCall interface {
	DialogState() (sipgw.DialogState, bool)
	DialogChanged() <-chan struct{}
	SetApp(app json.RawMessage)
	SetWriteAhead(f func(sipgw.DialogState) error)
	Release() (sipgw.DialogState, bool)
}

// adopter is a SIP network that adopts dialogs (*sipgw.UserAgent).
type adopter interface {
	Adopt(ctx context.Context, st sipgw.DialogState, o *sipgw.AdoptOptions) (*sipgw.Call, error)
}

// recordDialog starts recording a confirmed SIP call's dialog: the web
// side's snapshot into its App, each change to Options.ReplicateSIP (on
// a goroutine of the call's, until the SIP call is over), each request
// of ours to Options.WriteAheadSIP before it leaves. Once per call.
// c.mu is held.
func (fl *farLeg) recordDialog() {
	h := fl.h
	if h.opts.ReplicateSIP == nil || fl.recording {
		return
	}
	dc, ok := fl.sc.(dialogCall)
	w := fl.web()
	if !ok || w == nil {
		return
	}
	fl.recording = true
	sn := SIPSnapshot{Out: fl.out, Target: fl.c.target, Remote: fl.remote, Web: legSnapshot(w), Route: endpoint.BasisOf(w.ep)}
	if fl.media != nil && fl.media.Anchored() {
		ms := fl.media.State()
		sn.Media = &ms
	}
	fl.snap = sn
	app, _ := json.Marshal(sn)
	dc.SetApp(app)
	if ahead := h.opts.WriteAheadSIP; ahead != nil {
		dc.SetWriteAhead(func(st sipgw.DialogState) error { return ahead(sn, st) })
	}
	if !fl.watching {
		fl.watching = true
		h.far.wg.Go(func() { fl.watchDialog(dc, sn) })
	}
}

// earlyCall is a SIP call whose INVITE under way can be recorded
// (*sipgw.Call).
type earlyCall interface {
	EarlyState() (sipgw.DialogState, bool)
}

// recordInvite starts recording an outgoing SIP call's INVITE, just
// sent: its state (EarlyState) at each change to Options.ReplicateSIP
// until the answer, when recordDialog's snapshot takes over, and the
// end. The web side's part is the caller's leg, and the media as the
// offer left it. c.mu is held.
func (fl *farLeg) recordInvite() { fl.recordEarly(fl.c.caller, nil) }

// recordRinging records an incoming SIP call's INVITE as recordInvite
// does while it rings, and again when the web legs it rings change (a
// fork declines or leaves): the record is kept under the key of one
// ringing leg (Web, which stays while it rings), the other ringing legs
// in Forks, and the one that answers is recordDialog's. c.mu is held.
func (fl *farLeg) recordRinging() {
	var ringing []*leg
	for _, l := range fl.c.callees {
		if l.state == legRinging {
			ringing = append(ringing, l)
		}
	}
	if len(ringing) == 0 {
		return // the call is refused (settle) or answered
	}
	if !fl.watching {
		fl.recordEarly(ringing[0], ringing[1:])
		return
	}
	dc, ok := fl.sc.(dialogCall)
	if !ok || fl.c.winner != nil {
		return
	}
	w := ringing[0]
	for _, l := range ringing {
		if l.sub == fl.snap.Web.Sub && l.ep.ID() == fl.snap.Web.Session {
			w = l // the record stays under its key
		}
	}
	sn := fl.snap
	sn.Web, sn.Forks = legSnapshot(w), nil
	for _, l := range ringing {
		if l != w {
			sn.Forks = append(sn.Forks, legSnapshot(l))
		}
	}
	if sn.Web == fl.snap.Web && slices.Equal(sn.Forks, fl.snap.Forks) {
		return
	}
	fl.snap = sn
	app, _ := json.Marshal(sn)
	dc.SetApp(app) // signals the write
}

// recordEarly starts recording the call's INVITE under way, whose web
// leg is w (and, for an incoming call ringing several sessions, forks
// the other ringing legs). c.mu is held.
func (fl *farLeg) recordEarly(w *leg, forks []*leg) { fl.recordEarlyOver(w, forks, nil) }

// recordEarlyOver is recordEarly over the record prev, which another
// node wrote of the call and this one took over (RestoreRingingSIP): one
// kept under another leg's key (its session gone) is ended as the new
// one is written. c.mu is held.
func (fl *farLeg) recordEarlyOver(w *leg, forks []*leg, prev *SIPSnapshot) {
	h := fl.h
	dc, ok := fl.sc.(dialogCall)
	_, early := fl.sc.(earlyCall)
	if h.opts.ReplicateSIP == nil || !ok || !early || fl.watching || w == nil {
		return
	}
	fl.watching = true
	sn := SIPSnapshot{Out: fl.out, Target: fl.c.target, Remote: fl.remote, Web: legSnapshot(w)}
	for _, l := range forks {
		sn.Forks = append(sn.Forks, legSnapshot(l))
	}
	if fl.media != nil && fl.media.Anchored() {
		ms := fl.media.State()
		sn.Media = &ms
	}
	if !fl.out {
		sn.RingUntil = fl.c.ringUntil
	}
	fl.snap = sn
	app, _ := json.Marshal(sn)
	dc.SetApp(app) // signals the first write
	first := sn
	if prev != nil {
		first = *prev
	}
	h.far.wg.Go(func() { fl.watchDialog(dc, first) })
}

// watchDialog hands each change of the dialog to Options.ReplicateSIP
// (before the answer, its INVITE's: EarlyState), and its end, unless the
// call was handed over (released): its record is then the adopter's.
// The web side's part is the one in the state's App, sn at first: the
// record follows its web leg's key, which moves when the leg a ringing
// call is recorded under stops ringing, or another fork answers (the old
// record is ended, with its forks' keys, and the new one written).
func (fl *farLeg) watchDialog(dc dialogCall, sn SIPSnapshot) {
	rep := fl.h.opts.ReplicateSIP
	done := fl.sc.Done()
	ec, _ := dc.(earlyCall)
	var app json.RawMessage // the App sn was read from
	for {
		select {
		case <-dc.DialogChanged():
			st, ok := dc.DialogState()
			confirmed := ok
			if !ok && ec != nil {
				st, ok = ec.EarlyState()
			}
			if !ok {
				continue
			}
			cur := sn
			if !bytes.Equal(st.App, app) {
				var dec SIPSnapshot
				if json.Unmarshal(st.App, &dec) == nil {
					cur = dec
				}
			}
			if confirmed && len(cur.Forks) > 0 {
				// Answered, its App still the ringing call's:
				// recordDialog's, the winner's, follows.
				continue
			}
			if cur.Web.Session != sn.Web.Session || cur.Web.Sub != sn.Web.Sub {
				rep(sn, sipgw.DialogState{}, true)
			}
			sn, app = cur, st.App
			rep(sn, st, false)
		case <-done:
			if !fl.released.Load() {
				rep(sn, sipgw.DialogState{}, true)
			}
			return
		}
	}
}

// adoptFailedReason ends the web leg of a SIP call whose dialog this
// node could not take over (the peer refused the target refresh, or did
// not answer it).
const adoptFailedReason = "the call's SIP dialog could not be taken over"

// RestoreSIP goes on here with the confirmed SIP call of the dialog state
// st, which another node (dead, or this one's earlier life) recorded:
// its web leg's session is ep. It adopts the dialog (a target refresh
// with this node's Contact, bounded by ctx) and rebuilds the call,
// confirmed, on the same subsession; from then on the call's frames and
// SIP's requests pass as before, and Options.ReplicateSIP hears of it. When
// the adoption fails, the web leg gets shutdown (adoptFailedReason) and
// the error is returned.
func (h *Handler) RestoreSIP(ctx context.Context, st sipgw.DialogState, ep Endpoint) error {
	var sn SIPSnapshot
	if err := json.Unmarshal(st.App, &sn); err != nil {
		return err
	}
	if h.lookup(ep, sn.Web.Sub) != nil {
		return ErrLegTaken
	}
	c := &Call{target: sn.Target}
	w := restoredLeg(c, ep, sn.Web)
	if sn.Out {
		c.caller = w
	} else {
		c.callees, c.winner = []*leg{w}, w
	}
	fl := h.newFarLeg(c, sn.Out)
	fl.remote = sn.Remote
	if !sn.Out {
		fl.logWith("session_id", ep.ID(), "subsession_id", w.sub)
	}
	var o sipgw.AdoptOptions
	if sn.Out {
		// The header rules of the call's route, under this node's
		// configuration (the start's extension headers are not kept).
		o.Transform = endpoint.Route(ep, routing.Call, sn.Target, nil).Transform
	}
	// A failed adoption's BYE goes on after adopt returns (sipgw's
	// Adopt): its write-ahead, made after the caller deleted the record,
	// would write it again, for nobody. Once failed is set, none is made.
	var aheadMu sync.Mutex
	failed := false
	if ahead := h.opts.WriteAheadSIP; ahead != nil {
		o.WriteAhead = func(st sipgw.DialogState) error {
			aheadMu.Lock()
			defer aheadMu.Unlock()
			if failed {
				return nil // only the failed adoption's BYE is left
			}
			return ahead(sn, st)
		}
	}
	var sc sipCall
	err := ErrNoAdopt
	if h.far != nil && h.far.adopt != nil {
		err = fl.resumeMedia(sn.Media)
	}
	if err == nil {
		sc, err = h.far.adopt(ctx, st, &o)
		if err != nil {
			fl.deleteMedia(fl.media)
		}
	}
	if err != nil {
		aheadMu.Lock()
		failed = true
		aheadMu.Unlock()
		fl.rlog().Info("sip adopt", "a SIP call's dialog not taken over: its web leg ends", "err", err)
		out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionShutdown, "")
		out.Header.Reason = adoptFailedReason
		h.send(w, out, true)
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h.mu.Lock()
	key := legKey{ep.ID(), w.sub}
	if h.legs[key] != nil {
		h.mu.Unlock()
		fl.released.Store(true)
		if fl.media != nil {
			fl.media.Forget() // the other restore's session holds the call
		}
		h.far.wg.Go(func() { sc.(dialogCall).Release() })
		return ErrLegTaken
	}
	h.legs[key] = w
	h.calls[c] = struct{}{}
	h.mu.Unlock()
	w.held = recountCall(ep)
	fl.sc = sc
	if d, err := parseSDP(st.LocalSDP); err == nil && !fl.anchored() {
		// The web side's last SDP toward SIP: trickled candidates go
		// with its ICE credentials (trickle.go).
		fl.local = d
	}
	fl.phase = inConfirmed
	if sn.Out {
		fl.phase = outConfirmed
	}
	fl.logWith("call", sc.ID())
	h.addDialog(fl)
	h.far.wg.Go(fl.read)
	fl.recordDialog()
	fl.failPending(w, sn.Pending)
	if fl.media != nil {
		fl.media.OnLost(fl.mediaLost)
	}
	return nil
}

// resumeMedia goes on with the call's rtpengine session ms (nil: the call
// is not anchored). An anchored call on a node without rtpengine, or
// whose instance is not in its pool, cannot go on.
func (fl *farLeg) resumeMedia(ms *rtpengine.SessionState) error {
	if ms == nil {
		return nil
	}
	if fl.h.far.media == nil {
		return errNoMedia
	}
	s, err := fl.h.far.media.Resume(*ms)
	if err != nil {
		return err
	}
	fl.media = s
	return nil
}

// errNoMedia: an anchored call adopted by a node without rtpengine.
var errNoMedia = errors.New("call: the call's media is in rtpengine, and this node has none")

// The cause of the BYE that ends a recorded SIP call whose web user is
// gone (EndSIP; RFC 3326 Reason).
const (
	orphanCode   = 480
	orphanReason = "the web user is gone"
)

// EndSIP ends the SIP call of the dialog state st, which another node
// recorded (dead, or handing it over at a drain) and whose
// web leg's session is gone (expired before anyone went on with it): the
// phone would otherwise keep a call with no one on the other side until
// its session timer ran out, or for ever without one. This node's user
// agent sends the dialog's BYE (Reason: SIP;cause=480;text=orphanReason),
// bounded by ctx, with the call's header rules: an outgoing call's are
// x (its route's, which the caller binds under this node's configuration
// from the snapshot's Route, as an adoption binds them from the live
// session), an incoming call's as this node binds them; or the CANCEL of
// an outgoing call's INVITE under way (st.Invite); and the call's
// media goes from rtpengine. Nothing reaches the web side: there is
// none. ErrNoAdopt when this node's SIP side does not end recorded
// dialogs.
func (h *Handler) EndSIP(ctx context.Context, st sipgw.DialogState, x *routing.Transform) error {
	var sn SIPSnapshot
	if err := json.Unmarshal(st.App, &sn); err != nil {
		return err
	}
	return h.endSIP(ctx, st, sn, orphanCode, orphanReason, x)
}

// The end of a ringing SIP call whose node died (EndEarlySIP): an
// outgoing call's web caller hears it as the start's error and the
// callee as the CANCEL's cause (RFC 3326); an incoming call's caller gets
// the final response ringLostInCode, its web callees a shutdown with
// RingLostIn as the reason, which the gateway tells too a fork whose
// session resumes after the end.
const (
	ringLostCode   = protocol.CodeServiceUnavailable
	ringLostReason = "the call's node went down before the answer: cancelled"
	ringLostInCode = protocol.CodeTemporarilyUnavail
	RingLostIn     = "the call's node went down before the answer"
)

// EndEarlySIP ends the SIP call of the state st, recorded by another node
// while its INVITE was under way (st.Invite: ringing or early) and gone
// with that node: an INVITE transaction does not move. This node's user
// agent cancels an outgoing call's INVITE (EndSIP's way, with Reason:
// SIP;cause=503) or answers an incoming call's with 480 (statelessly),
// the call's media goes from rtpengine, and the web legs, whose sessions
// are among eps, are told: an outgoing call's caller gets the error of
// its start (503, ringLostReason), each web leg an incoming call rang (Web
// and its Forks) a shutdown (RingLostIn). A leg whose session is not in
// eps (gone) is told nothing. ctx bounds the CANCEL.
func (h *Handler) EndEarlySIP(ctx context.Context, st sipgw.DialogState, eps ...Endpoint) error {
	var sn SIPSnapshot
	if err := json.Unmarshal(st.App, &sn); err != nil {
		return err
	}
	if st.Invite == nil {
		return errors.New("call: EndEarlySIP of a state with no INVITE under way")
	}
	c := &Call{target: sn.Target}
	endpointOf := func(ls LegSnapshot) Endpoint {
		for _, ep := range eps {
			if ep != nil && ep.ID() == ls.Session {
				return ep
			}
		}
		return nil
	}
	if sn.Out {
		err := h.endSIP(ctx, st, sn, ringLostCode, ringLostReason, nil)
		if ep := endpointOf(sn.Web); ep != nil {
			c.caller = restoredLeg(c, ep, sn.Web)
			h.failCaller(c, ringLostCode, ringLostReason)
		}
		return err
	}
	err := h.endSIP(ctx, st, sn, ringLostInCode, RingLostIn, nil)
	fl := h.newFarLeg(c, false)
	fl.remote = sn.Remote
	for _, ls := range append([]LegSnapshot{sn.Web}, sn.Forks...) {
		ep := endpointOf(ls)
		if ep == nil {
			continue
		}
		w := restoredLeg(c, ep, ls)
		out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionShutdown, "")
		out.Header.Reason = RingLostIn
		h.send(w, out, true)
	}
	return err
}

// endSIP is EndSIP of st, whose App is sn, with the cause code and
// reason, and an outgoing call's header rules x (nil: none).
func (h *Handler) endSIP(ctx context.Context, st sipgw.DialogState, sn SIPSnapshot, code int, reason string, x *routing.Transform) error {
	if h.far == nil || h.far.end == nil {
		return ErrNoAdopt
	}
	var o sipgw.AdoptOptions
	if sn.Out {
		o.Transform = x
	}
	err := h.far.end(ctx, st, code, reason, &o)
	if sn.Media != nil && h.far.media != nil {
		fl := h.newFarLeg(&Call{target: sn.Target}, false)
		fl.logWith("session_id", sn.Web.Session, "subsession_id", sn.Web.Sub)
		if merr := fl.resumeMedia(sn.Media); merr == nil {
			fl.deleteMedia(fl.media)
		} else {
			fl.mediaFailed("delete", merr)
		}
	}
	return err
}

// ReleasedSIP is a SIP call handed over at a drain (ReleaseSIP): the
// web side's part and the dialog's last state, for its record.
type ReleasedSIP struct {
	Call   SIPSnapshot
	Dialog sipgw.DialogState
}

// ReleaseSIP hands over the confirmed SIP calls of ep, for another node
// to adopt (a drain): each dialog is released without a word to the peer
// (sipgw.Call.Release), its media left in rtpengine, and the web side
// forgotten without a word to the client, whose session moves. It
// returns what the calls' records must say; a call not confirmed yet
// stays (its INVITE transaction cannot move).
func (h *Handler) ReleaseSIP(ep Endpoint) []ReleasedSIP {
	var out []ReleasedSIP
	for _, l := range h.legsOf(ep) {
		c := l.call
		c.mu.Lock()
		fl, ok := c.far.(*farLeg)
		if !ok || c.ended || !fl.recording || l != fl.web() {
			c.mu.Unlock()
			continue
		}
		dc := fl.sc.(dialogCall)
		sn := fl.snap
		fl.released.Store(true)
		fl.webGone = true
		h.endFar(c)
		c.mu.Unlock()
		if st, ok := dc.Release(); ok {
			out = append(out, ReleasedSIP{Call: sn, Dialog: st})
		}
	}
	return out
}

// dropSIP forgets the SIP call of c without a word to either side: its
// dialog is another node's now (adopted while this one was taken for
// dead), or handed over (a drain). The dialog's record stays. c.mu is
// held; false when c has no SIP leg to release.
func (fl *farLeg) dropSIP() bool {
	dc, ok := fl.sc.(dialogCall)
	if !ok {
		return false
	}
	fl.released.Store(true)
	fl.webGone = true
	fl.h.endFar(fl.c)
	fl.h.far.wg.Go(func() { dc.Release() })
	return true
}

// ender is a SIP network that ends dialogs another node recorded
// (*sipgw.UserAgent).
type ender interface {
	EndDialog(ctx context.Context, st sipgw.DialogState, code int, reason string, o *sipgw.AdoptOptions) error
}

// endVia makes the end function of a SIP network that ends recorded
// dialogs.
func endVia(net SIP) func(context.Context, sipgw.DialogState, int, string, *sipgw.AdoptOptions) error {
	e, ok := net.(ender)
	if !ok {
		return nil
	}
	return e.EndDialog
}

// adoptVia makes the adopt function of a SIP network that adopts.
func adoptVia(net SIP) func(context.Context, sipgw.DialogState, *sipgw.AdoptOptions) (sipCall, error) {
	a, ok := net.(adopter)
	if !ok {
		return nil
	}
	return func(ctx context.Context, st sipgw.DialogState, o *sipgw.AdoptOptions) (sipCall, error) {
		sc, err := a.Adopt(ctx, st, o)
		if err != nil {
			return nil, err
		}
		return sipgwCall{sc}, nil
	}
}
