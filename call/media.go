package call

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// This file anchors the media of SIP calls in rtpengine (docs/media.md)
// when SIPOptions.Media is set: every SDP between a web leg and SIP goes
// through the Adapter, which rewrites WebRTC media (ICE, DTLS-SRTP,
// rtcp-mux) for plain RTP phones and back. Which SDP of a transition goes
// where is the transition table's say (mediaOf in sipfsm.go); the
// commands are network round trips, so they run where the far leg may
// block, never under c.mu: on the worker (web SDP) or on the reader
// before the event is stepped (SIP SDP). The call's rtpengine session is
// deleted when its SIP side is over, whichever way it ended.

// mediaReason is the reason of a call refused because rtpengine did not
// do its part (unreachable, or an error): 503 both ways.
const mediaReason = "media relay unavailable"

// lostReason ends a call whose rtpengine instance was lost mid-call
// (docs/media.md, "Calls on a dead instance"): toward the web side as a
// shutdown's reason (503 before the answer), toward SIP in the BYE's
// Reason header (503 before the answer).
const lostReason = "media relay lost"

// newDialogToken returns a random Call-ID or From-tag: dialSIP chooses
// them, because rtpengine keys the call by them before the INVITE leaves.
func newDialogToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// anchored reports whether the call's media goes through rtpengine. c.mu
// is held.
func (fl *farLeg) anchored() bool { return fl.media != nil && fl.media.Anchored() }

// mediaFailed counts and logs a failed rtpengine command of the call.
func (fl *farLeg) mediaFailed(what string, err error) {
	fl.h.mediaFailed.Add(1)
	fl.rlog().Warn("media relay", "media relay command failed", "what", what, "err", err)
}

// dialMedia passes the web caller's offer through rtpengine before the
// INVITE; on the worker, without c.mu. It puts rtpengine's SDP in o, or
// returns false when the call failed (the web caller heard 503).
func (fl *farLeg) dialMedia(o *sipgw.DialOptions) bool {
	m := fl.h.far.media
	if m == nil {
		return true
	}
	ctx, cancel := opCtx()
	keys := rtpengine.Keys{CallID: o.CallID, FromTag: o.FromTag}
	// The target's route may anchor or not, want SDES-SRTP, change codecs.
	s, sdp, err := m.OfferRoute(ctx, rtpengine.WebToSIP, keys, string(o.SDP), fl.h.far.mediaRoute(o.Target, o.Route.Trunk))
	cancel()
	fl.c.mu.Lock()
	fl.media = s
	fl.c.mu.Unlock()
	if err == nil {
		s.OnLost(fl.mediaLost)
	}
	if err != nil {
		fl.mediaFailed("offer", err)
		// rtpengine may have made the call before its answer was lost.
		fl.failDial(protocol.CodeServiceUnavailable, mediaReason)
		return false
	}
	if s.Anchored() {
		web := string(o.SDP)
		o.SDP = []byte(sdp)
		// The browser's ICE peer is rtpengine, not the phone: see
		// webTrickle.
		o.Trickle = false
		o.NotAcceptable = func(ctx context.Context, code int) []byte { return fl.retrySDES(ctx, s, web, code) }
	}
	return true
}

// retrySDES is the offer of an INVITE sent again after the phone refused
// the RTP/AVP one (488, 606, 415): SDES-SRTP on the same rtpengine call,
// once, when the auto policy anchored it (docs/media.md, "SDES-SRTP
// phones"); nil lets the refusal end the call. On the SIP call's
// goroutine, before the call ends.
func (fl *farLeg) retrySDES(ctx context.Context, s *rtpengine.Session, web string, code int) []byte {
	ctx, cancel := context.WithTimeout(ctx, opTimeout())
	defer cancel()
	out, ok, err := s.RetrySDES(ctx, web)
	if !ok {
		return nil
	}
	if err != nil {
		fl.mediaFailed("SDES retry", err)
		return nil
	}
	fl.h.sdesRetries.Add(1)
	fl.log().Debug("INVITE refused: offered again in SDES-SRTP", "code", code)
	return []byte(out)
}

// failDial ends an outgoing call that never reached SIP (rtpengine or
// the INVITE failed): the web caller hears code first, then the call's
// media, if any, is deleted in rtpengine before the call is forgotten.
// On the worker, without c.mu.
func (fl *farLeg) failDial(code int, reason string) {
	c := fl.c
	c.mu.Lock()
	if !c.ended {
		fl.h.failCaller(c, code, reason)
	}
	fl.h.endFar(c)
	s := fl.media
	c.mu.Unlock()
	fl.deleteMedia(s)
	c.mu.Lock()
	fl.finishLocked()
	c.mu.Unlock()
}

// ringMedia passes an incoming SIP offer through rtpengine before the web
// callees hear of it; on the worker, without c.mu. It returns the SDP for
// the web side, or false when the call was refused (503).
func (fl *farLeg) ringMedia(offer string) (string, bool) {
	m := fl.h.far.media
	if m == nil {
		return offer, true
	}
	k := fl.sc.Keys()
	ctx, cancel := opCtx()
	// The caller's route: its host, as media.routes names SIP peers.
	s, out, err := m.OfferRoute(ctx, rtpengine.SIPToWeb, rtpengine.Keys{CallID: k.CallID, FromTag: k.RemoteTag, ViaBranch: k.ViaBranch}, offer,
		fl.h.far.mediaRoute(fl.sc.Remote(), ""))
	cancel()
	fl.c.mu.Lock()
	fl.media = s
	fl.c.mu.Unlock()
	if err == nil {
		s.OnLost(fl.mediaLost)
	}
	if err != nil {
		fl.mediaFailed("offer", err)
		fl.c.mu.Lock()
		fl.reject(protocol.CodeServiceUnavailable)
		fl.c.mu.Unlock()
		return "", false
	}
	return out, true
}

// webAnswerMedia passes a web callee's answer (early or final) or the web
// side's answer to a SIP re-offer through rtpengine, toward SIP; on the
// worker. reoffer: the answer is to a re-offer from SIP.
func (fl *farLeg) webAnswerMedia(s *rtpengine.Session, sdp []byte, reoffer bool) ([]byte, error) {
	if s == nil || !s.Anchored() {
		return sdp, nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	var out string
	var err error
	if reoffer {
		out, err = s.AnswerTo(ctx, rtpengine.SIPToWeb, string(sdp))
	} else {
		out, err = s.Answer(ctx, fl.sc.Keys().LocalTag, string(sdp))
	}
	if err != nil {
		fl.mediaFailed("answer", err)
		return nil, err
	}
	return []byte(out), nil
}

// sipMedia passes the SDP of a SIP event through rtpengine when the
// transition it causes carries it to the web side (mediaOf); on the
// reader, before the event is stepped. An error is stepped with the event
// (sipArgs.mediaErr), which then fails what the SDP was for.
func (fl *farLeg) sipMedia(ev sipgw.Event) (sipgw.Event, error) {
	if !protocol.HasSDP(string(ev.SDP)) {
		return ev, nil
	}
	fl.c.mu.Lock()
	_, act := sipNext(fl.phaseNow(), eventInput(ev), bySIP)
	s := fl.media
	fl.c.mu.Unlock()
	op := mediaOf(act)
	if s == nil || !s.Anchored() || (op != mediaSIPAnswer && op != mediaSIPOffer && op != mediaSIPReanswer) {
		return ev, nil
	}
	if _, err := parseSDP(string(ev.SDP)); err != nil {
		// Refused as without rtpengine (488), by the action that parses
		// it; rtpengine never sees it.
		return ev, nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	var out string
	var err error
	switch op {
	case mediaSIPAnswer:
		out, err = s.Answer(ctx, ev.ToTag, string(ev.SDP))
	case mediaSIPOffer:
		out, err = s.OfferFrom(ctx, rtpengine.SIPToWeb, string(ev.SDP))
	case mediaSIPReanswer:
		// sipgw offered the phone the last SDP it had from us, which is
		// rtpengine's: the phone's answer is to an offer from the web
		// side's end of rtpengine.
		out, err = s.AnswerTo(ctx, rtpengine.WebToSIP, string(ev.SDP))
	}
	if err != nil {
		fl.mediaFailed(op.String(), err)
		return ev, err
	}
	ev.SDP = []byte(out)
	return ev, nil
}

// webOfferMedia passes the web side's re-offer to rtpengine (toward SIP);
// webReanswerMedia SIP's answer to it (toward the web side). On the worker.
func (fl *farLeg) webOfferMedia(s *rtpengine.Session, sdp string) (string, error) {
	if s == nil || !s.Anchored() {
		return sdp, nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	out, err := s.OfferFrom(ctx, rtpengine.WebToSIP, sdp)
	if err != nil {
		fl.mediaFailed("re-offer", err)
	}
	return out, err
}

// rollbackMedia makes rtpengine hold the offer/answer in force again
// after the web side's re-offer, which went to it, failed toward SIP or
// in rtpengine: the call goes on with the session it had (RFC 3264 §5).
// On the worker, after the web side heard of the failure. A failure is
// counted; the call goes on, as after a failed re-offer.
func (fl *farLeg) rollbackMedia(s *rtpengine.Session) {
	if s == nil || !s.Anchored() {
		return
	}
	ctx, cancel := opCtx()
	defer cancel()
	if err := s.Rollback(ctx); err != nil {
		fl.mediaFailed("rollback", err)
	}
}

func (fl *farLeg) webReanswerMedia(s *rtpengine.Session, sdp []byte) ([]byte, error) {
	if s == nil || !s.Anchored() {
		return sdp, nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	out, err := s.AnswerTo(ctx, rtpengine.WebToSIP, string(sdp))
	if err != nil {
		fl.mediaFailed("re-answer", err)
		return nil, err
	}
	return []byte(out), nil
}

// releaseMedia deletes the call's rtpengine session once the SIP side is
// over, on the worker after whatever command is queued there (a command
// after the delete would make the call again), and returns the delete's
// figures; the session is forgotten, so a second call does nothing.
// Called by the reader.
func (fl *farLeg) releaseMedia() []rtpengine.LegStats {
	fl.c.mu.Lock()
	s := fl.media
	fl.media = nil
	fl.c.mu.Unlock()
	if s == nil || !s.Anchored() {
		return nil
	}
	if fl.released.Load() {
		// Another node goes on with the call, media and all
		// (siprestore.go).
		s.Forget()
		return nil
	}
	var legs []rtpengine.LegStats
	done := make(chan struct{})
	fl.must(func() {
		defer close(done)
		legs = fl.deleteMedia(s)
	})
	<-done
	return legs
}

// deleteMedia deletes s in rtpengine now and records what rtpengine
// received from each leg (jsonrtc_media_*), which it returns. A failure
// leaves it to rtpengine's own timeout (docs/media.md), and is counted.
func (fl *farLeg) deleteMedia(s *rtpengine.Session) []rtpengine.LegStats {
	if s == nil || !s.Anchored() {
		return nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	legs, err := s.Delete(ctx)
	fl.h.quality.observe(legs)
	for _, l := range legs {
		args := []any{"side", l.Side, "packets", l.Packets, "bytes", l.Bytes, "errors", l.Errors}
		if q := l.Quality; q != nil {
			args = append(args, "mos", q.MOS, "jitter", q.Jitter, "loss_percent", q.Loss, "lost", q.CumulativeLoss, "rtt", q.RTT)
		}
		fl.log().Debug("media of the call", args...)
	}
	var re *rtpengine.Error
	if err != nil && !errors.As(err, &re) {
		// rtpengine answering "Unknown call-id" knows nothing of the
		// call: nothing is left. No answer is a failure.
		fl.mediaFailed("delete", err)
	}
	return legs
}

// endPayload is the payload of the shutdown that tells the web side the
// SIP side ended the call, or that answers the web side's own
// (figuresToHangup): the figures of its media's delete, if any
// (docs/protocol.md §5.8). c.mu is held.
func (fl *farLeg) endPayload() json.RawMessage {
	if len(fl.endMedia) == 0 {
		return nil
	}
	out := make([]protocol.MediaStats, 0, len(fl.endMedia))
	for _, l := range fl.endMedia {
		m := protocol.MediaStats{Side: string(l.Side), Packets: l.Packets, Bytes: l.Bytes, Errors: l.Errors}
		if !l.At.IsZero() {
			m.AsOf = l.At.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		if q := l.Quality; q != nil {
			m.Quality = &protocol.MediaQuality{MOS: q.MOS, JitterMS: ms(q.Jitter), LossPercent: q.Loss, Lost: q.CumulativeLoss, RTTMS: ms(q.RTT)}
		}
		out = append(out, m)
	}
	return protocol.EncodePayload(protocol.ShutdownPayload{Media: out})
}

// noteHangup remembers the web leg l whose shutdown f ends an anchored
// call: the figures of the media's delete are its due too
// (figuresToHangup). Not for wsc.js, which expects nothing after its
// shutdown, nor for a leg that left with its session. c.mu is held.
func (fl *farLeg) noteHangup(l *leg, f *protocol.Frame) {
	if f == nil || l == nil || l.ep.Oracle() || !fl.anchored() {
		return
	}
	fl.hungUp, fl.hungCorr = l, protocol.ClientCorrelation(f)
}

// figuresToHangup gives the web leg that hung up the figures of the
// media's delete: a shutdown of its own, on its subsession, with the
// correlation of the shutdown it sent and itself as initiator, which
// tells it from one by the far side (docs/protocol.md §5.8). A client
// that knows no such frame finds no call on the subsession and drops
// it. Nothing goes without figures. c.mu is held.
func (fl *farLeg) figuresToHangup() {
	l := fl.hungUp
	fl.hungUp = nil
	p := fl.endPayload()
	if l == nil || p == nil {
		return
	}
	out := fl.frameTo(l, protocol.TypeMessage, protocol.ActionShutdown, fl.hungCorr)
	out.Header.Initiator, out.Header.Target = l.ep.Identity(), fl.remoteName()
	out.Payload = p
	fl.h.send(l, out, false)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mediaLost ends the call when the rtpengine instance holding its media
// is lost (Session.OnLost): no media flows, and none can be moved to
// another instance. The pool logs the loss once per instance and counts
// the calls. On the pool's goroutine.
func (fl *farLeg) mediaLost() { fl.endAnchored(lostReason) }

// EndAnchored ends every call whose media is anchored in rtpengine, as a
// lost instance's, with reason, and returns how many it ended: for a
// node cut off from its cluster, whose peers delete those calls' media
// in rtpengine (gateway/medialedger.go) while the calls would go on here
// without it (docs/media.md, "A gateway cut off from its cluster").
func (h *Handler) EndAnchored(reason string) int {
	h.mu.Lock()
	calls := make([]*Call, 0, len(h.calls))
	for c := range h.calls {
		calls = append(calls, c)
	}
	h.mu.Unlock()
	n := 0
	for _, c := range calls {
		c.mu.Lock()
		fl, ok := c.far.(*farLeg)
		c.mu.Unlock()
		if ok && fl.endAnchored(reason) {
			n++
		}
	}
	return n
}

// endAnchored ends the call, if its media is anchored, for reason: the
// web side hears it (error/start 503 to an unanswered caller, shutdown
// with the reason once answered; ringing callees a shutdown), SIP a
// CANCEL, a 503, or a BYE with a Reason header; the media's delete
// follows the SIP side's end (releaseMedia). The line here is the call's
// own, at debug. false when there was nothing to end.
func (fl *farLeg) endAnchored(reason string) bool {
	c, h := fl.c, fl.h
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || fl.webGone || fl.finished || !fl.anchored() {
		return false
	}
	fl.log().Debug("call ended with its anchored media", "reason", reason)
	// rtpengine is gone with its counters, or out of the call's reach by
	// the time its delete answers: what its last periodic query got
	// (media.figures_interval) is what the web side hears, marked as of
	// then.
	if fl.media != nil {
		fl.endMedia = fl.media.LastFigures()
		h.quality.observe(fl.endMedia)
	}
	switch w := fl.web(); {
	case fl.out && !fl.phase.answered():
		h.failCaller(c, protocol.CodeServiceUnavailable, reason)
	case w != nil:
		fl.shutdownWith(w, reason, fl.endPayload())
	default:
		fl.cancelLegs(nil)
	}
	fl.webGone = true
	fl.hangupWith(protocol.CodeServiceUnavailable, reason)
	h.endFar(c)
	return true
}

// mediaFail ends a call whose media rtpengine could not set up: as a bad
// SDP does (badSIPSDP), with 503. c.mu is held.
func (fl *farLeg) mediaFail() {
	fl.failSIP(protocol.CodeServiceUnavailable, mediaReason)
}
