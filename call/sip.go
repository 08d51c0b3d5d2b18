package call

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
	sdp "github.com/pion/sdp/v3"
)

// This file interworks calls with SIP (docs/protocol.md §10.2): a web
// caller whose target is not a web identity gets an INVITE dialog
// (outgoing), and an INVITE for a registered web identity rings every
// live session of it (incoming, forked as the relay forks). The web side
// of such a call is an ordinary *Call whose far field holds the SIP leg;
// the relay code never sees it. Web early media to a SIP caller goes as
// a reliable 183 when the caller supports 100rel (sipgw answers its
// PRACK); trickled candidates are interworked in trickle.go.
//
// Threads: frames arrive under the Call's lock (HandleFrame); SIP events
// arrive on the far leg's reader goroutine, which takes the same lock to
// report them. Whatever blocks on the network (INVITE, PRACK, re-INVITE,
// BYE...) runs on the far leg's worker goroutine, in the order the web
// side asked for it, without any lock held. SIP events wait on the reader
// behind a worker operation that still owes the web side the answer of
// an exchange SIP completed before them (read), so the web side hears of
// the call in the order it happened.

// SIP is the SIP network as the call handler uses it; *sipgw.UserAgent
// implements it.
type SIP interface {
	Dial(ctx context.Context, o sipgw.DialOptions) (*sipgw.Call, error)
}

// sipCall is one SIP call leg as this file drives it: a *sipgw.Call
// (sipgwCall), or a fake in the unit tests.
type sipCall interface {
	ID() string
	Identity() string
	Remote() string
	Offer() []byte
	Headers() []sipgw.Header
	Events() <-chan sipgw.Event
	Done() <-chan struct{}
	Hangup(ctx context.Context, ext ...sipgw.Header) error
	HangupWith(ctx context.Context, code int, reason string) error
	Reject(ctx context.Context, code int, reason string) error
	Progress(ctx context.Context, code int, sdp []byte, reliable bool) error
	Answer(ctx context.Context, sdp []byte, headers ...sipgw.Header) error
	Ack(ctx context.Context, sdp []byte) error
	Prack(ctx context.Context, sdp []byte) ([]byte, error)
	Reoffer(ctx context.Context, sdp []byte, ext ...sipgw.Header) ([]byte, []sipgw.Header, error)
	UpdateEarly(ctx context.Context, sdp []byte, ext ...sipgw.Header) ([]byte, []sipgw.Header, error)
	SendDTMF(ctx context.Context, digit string, duration time.Duration, ext ...sipgw.Header) error
	SendInfo(ctx context.Context, in sipgw.Info) error
	Request(ctx context.Context, r sipgw.Request) (sipgw.Answer, error)
	Transfer(ctx context.Context, target string, ext ...sipgw.Header) ([]sipgw.Header, error)
	TransferReplacing(ctx context.Context, target string, r sipgw.Replaces, ext ...sipgw.Header) ([]sipgw.Header, error)
	Replaces() (sipgw.Replaces, bool)
	PeerAccepts(pkg string) bool
	SetTrickle(on bool)
	Keys() sipgw.DialogKeys
	// reoffer returns what answers the re-INVITE of an EventReoffer.
	reoffer(ev sipgw.Event) reofferAnswer
	// refer returns what answers the REFER of an EventRefer.
	refer(ev sipgw.Event) referAnswer
	// declaredInfo returns what answers the INFO of an EventInfo of a
	// declared package (template.go).
	declaredInfo(ev sipgw.Event) infoAnswer
}

type reofferAnswer interface {
	Accept(sdp []byte) error
	Reject(code int, reason string) error
}

type sipgwCall struct{ *sipgw.Call }

func (c sipgwCall) reoffer(ev sipgw.Event) reofferAnswer { return ev.Reoffer }

func (c sipgwCall) refer(ev sipgw.Event) referAnswer { return ev.Refer }

func (c sipgwCall) declaredInfo(ev sipgw.Event) infoAnswer { return ev.InfoRequest }

// SIPOptions connect a Handler to a SIP network ([Handler.UseSIP]).
type SIPOptions struct {
	// Domains are the SIP domains: a target user@domain in one of them
	// that is no web identity is called over SIP, as is every sip:,
	// sips: and tel: URI and every phone number.
	Domains []string
	// Headers lists the extension headers (case-insensitive names) that
	// are passed to SIP as headers of the same name; others stay on the
	// web side. Each is still checked by sipgw.ValidateHeader.
	Headers []string
	// Media anchors the calls' media in rtpengine (media.go); nil: SDP
	// passes unchanged.
	Media *rtpengine.Adapter
	// MediaRoute returns the media treatment of a call whose SIP peer
	// is target, reached by trunk (media.routes, media.sdes,
	// media.codecs: rtpengine.Config.RouteFor); nil: the Adapter's
	// policy, no SDES, no codec changes.
	MediaRoute func(target, trunk string) rtpengine.Route
	// Templates returns the declared actions in force (a reload swaps
	// them): an INFO of a declared Info Package reaches the web side as
	// a request of its action (template.go). Nil: none.
	Templates func() *templates.Set
}

// mediaRoute is the media treatment of a call whose SIP peer is target.
func (s *sipSide) mediaRoute(target, trunk string) rtpengine.Route {
	if s.route == nil {
		return rtpengine.Route{}
	}
	return s.route(target, trunk)
}

type sipSide struct {
	dial    func(context.Context, sipgw.DialOptions) (sipCall, error)
	adopt   func(context.Context, sipgw.DialogState, *sipgw.AdoptOptions) (sipCall, error)                        // nil: dialogs do not move here (siprestore.go)
	ringing func(sipgw.DialogState) (sipCall, error)                                                              // nil: ringing calls do not move here (sipring.go)
	end     func(ctx context.Context, st sipgw.DialogState, code int, reason string, o *sipgw.AdoptOptions) error // nil: no recorded dialog is ended here (EndSIP)
	domains map[string]bool
	headers map[string]bool
	media   *rtpengine.Adapter
	route   func(target, trunk string) rtpengine.Route
	tmpl    func() *templates.Set
	wg      sync.WaitGroup // every far leg's goroutines
}

// webExt is the extension headers the call's to_web rules made of a SIP
// message (sipgw applied them: docs/routing.md).
func (s *sipSide) webExt(hs []sipgw.Header) []protocol.Ext {
	var out []protocol.Ext
	for _, h := range hs {
		out = append(out, protocol.Ext{Name: h.Name, Kind: protocol.ExtString, Value: h.Value})
	}
	return out
}

// errExt is webExt of the headers of a failure response in err.
func (s *sipSide) errExt(err error) []protocol.Ext {
	var re *sipgw.ResponseError
	if errors.As(err, &re) {
		return s.webExt(re.Headers)
	}
	return nil
}

// frameExt is the extension headers of the web frame f, which the call's
// header rules may read ({ext:NAME}); none goes to SIP as it is. f may
// be nil (an end the web side did not ask for).
func frameExt(f *protocol.Frame) []sipgw.Header {
	if f == nil || len(f.Header.Ext) == 0 {
		return nil
	}
	out := make([]sipgw.Header, 0, len(f.Header.Ext))
	for _, e := range f.Header.Ext {
		out = append(out, sipgw.Header{Name: e.Name, Value: e.Value})
	}
	return out
}

// opTimeout bounds one SIP operation of a far leg: a transaction's
// longest life (Timer B/F) plus slack.
func opTimeout() time.Duration { return 64*sip.T1 + 5*time.Second }

// farQueue bounds the SIP operations waiting on one call.
const farQueue = 32

// UseSIP makes h call non-web targets over net. Call it before the first
// frame. Incoming calls come in through [Handler.IncomingSIP].
func (h *Handler) UseSIP(net SIP, o SIPOptions) {
	h.useSIP(func(ctx context.Context, o sipgw.DialOptions) (sipCall, error) {
		sc, err := net.Dial(ctx, o)
		if err != nil {
			return nil, err
		}
		return sipgwCall{sc}, nil
	}, o)
	h.far.adopt = adoptVia(net)
	h.far.ringing = adoptRingingVia(net)
	h.far.end = endVia(net)
}

func (h *Handler) useSIP(dial func(context.Context, sipgw.DialOptions) (sipCall, error), o SIPOptions) {
	s := &sipSide{dial: dial, domains: map[string]bool{}, headers: map[string]bool{}, media: o.Media, route: o.MediaRoute, tmpl: o.Templates}
	for _, d := range o.Domains {
		s.domains[strings.ToLower(d)] = true
	}
	for _, n := range o.Headers {
		s.headers[strings.ToLower(n)] = true
	}
	h.far = s
}

// WaitSIP waits for the goroutines of every SIP call leg, or returns
// ctx's error when ctx ends first; call it after the SIP side closed
// (which ends every call).
func (h *Handler) WaitSIP(ctx context.Context) error {
	if h.far == nil {
		return nil
	}
	done := make(chan struct{})
	go func() { h.far.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HasSIPCall reports whether ep takes part in a call with a SIP leg: a
// draining gateway hands the confirmed ones over (ReleaseSIP) and keeps
// the session while one rings, since an INVITE transaction does not
// move between nodes.
func (h *Handler) HasSIPCall(ep Endpoint) bool {
	for _, l := range h.legsOf(ep) {
		l.call.mu.Lock()
		_, sip := l.call.far.(*farLeg)
		ended := l.call.ended
		l.call.mu.Unlock()
		if sip && !ended {
			return true
		}
	}
	return false
}

// routesToSIP says whether a start to target goes to SIP: when the
// target is no web identity and has a SIP form. The error is the
// directory's that could not tell whether target has sessions (a
// cluster's store read cut short): the caller answers 480 ErrLookup, as
// relay.start does, since taking it for nobody sent a call to a web user
// online on another node out to SIP.
func (h *Handler) routesToSIP(target string) (bool, error) {
	if h.far == nil {
		return false, nil
	}
	lower := strings.ToLower(target)
	if strings.HasPrefix(lower, "sip:") || strings.HasPrefix(lower, "sips:") || strings.HasPrefix(lower, "tel:") {
		return true, nil
	}
	eps, err := endpoint.Find(h.dir, target)
	if err != nil {
		return false, err
	}
	if len(eps) > 0 || h.dir.Known(target) {
		return false, nil
	}
	if at := strings.LastIndexByte(lower, '@'); at >= 0 {
		return h.far.domains[lower[at+1:]], nil
	}
	return isPhoneNumber(target), nil
}

func isPhoneNumber(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '+' && i == 0, c == '-', c == '.', c == '(', c == ')':
		default:
			return false
		}
	}
	return digits > 0 && len(s) <= 32
}

// sipHeaders maps the allowed extension headers of a frame to SIP
// headers. A value SIP cannot carry is an error naming the header, which
// the frame is answered with (400): never sent, never dropped in silence.
func (h *Handler) sipHeaders(ext []protocol.Ext) ([]sipgw.Header, error) {
	var out []sipgw.Header
	for _, e := range ext {
		if !h.far.headers[strings.ToLower(e.Name)] {
			continue
		}
		hd := sipgw.Header{Name: e.Name, Value: e.Value}
		if err := sipgw.ValidateHeader(hd); err != nil {
			return nil, err
		}
		out = append(out, hd)
	}
	return out, nil
}

// farLeg is the SIP side of a call.
type farLeg struct {
	h    *Handler
	c    *Call
	out  bool                        // outgoing: the web caller is c.caller
	sc   sipCall                     // set by the worker once dialled (outgoing)
	logp atomic.Pointer[slog.Logger] // log(); read by the worker too

	// The call's SIP operations, run one at a time in order by a worker
	// that lives only while there are some: most calls have three (dial,
	// ACK, hang-up) spread over their life, and a parked goroutine per
	// call costs more than starting one when work comes.
	opMu    sync.Mutex
	ops     []func() // on opsBuf until more wait at once
	opsBuf  [2]func()
	running bool          // a worker (or the caller of runOrQueue) is on an op
	done    chan struct{} // closed when the SIP call is over and reported
	// unfenced wakes the reader when fence drops to 0 (cap 1; the reader
	// reads fence again under c.mu, so a stale wake-up is harmless).
	unfenced chan struct{}

	// Guarded by c.mu.
	phase        sipPhase                // where the call stands (sipfsm.go); over is c.ended
	remote       string                  // the SIP party, as the web side sees it
	webGone      bool                    // the web side ended the call: tell it nothing more
	earlySDP     json.RawMessage         // the payload of the last provisional with SDP
	earlyAnswer  bool                    // a reliable provisional answered the INVITE's offer: a web PRACK may offer (webPrack)
	completeCorr string                  // the web correlation the next ACK completes
	webReoffer   string                  // the web's re-offer awaiting SIP's answer (its correlation)
	reinviting   bool                    // our re-INVITE for webReoffer went to SIP, or its rollback in rtpengine is under way: SIP's re-offers wait on the reader (read)
	referIn      *referIn                // SIP's REFER, from the transfer request to the new call's final status (transfer.go)
	transferOut  *transferOut            // the web's transfer toward SIP, until its final NOTIFY (transfer.go)
	sipReoffer   *sipReoffer             // SIP's re-offer awaiting the web's answer
	local        *sdp.SessionDescription // the web side's last SDP toward SIP (trickle.go)
	trickle      []sdp.Attribute         // web candidates not yet given to SIP (trickle.go)
	trickleBytes int
	trickleUfrag string // the ICE generation of trickle
	finished     bool
	// fence counts the worker's operations whose SIP exchange answers
	// something the web side asked (a re-offer, a PRACK's offer): SIP's
	// next events wait on the reader until the answer has reached the
	// web side (read).
	fence    int
	media    *rtpengine.Session   // the call's media in rtpengine (media.go); nil without, and once deleted
	endMedia []rtpengine.LegStats // the delete's figures, for the web side's shutdown (endPayload)
	hungUp   *leg                 // the web leg whose shutdown ended an anchored call, owed the figures (figuresToHangup)
	hungCorr string               // that shutdown's correlation
	// declared: SIP's INFOs of declared packages the web side has not
	// answered, by correlation (template.go).
	declared  map[string]pendingInfo
	remoteTag string      // outgoing: the To-tag of the fork that answered
	recording bool        // the dialog is recorded (siprestore.go)
	watching  bool        // the dialog's changes are watched: from the dial when its INVITE is recorded
	snap      SIPSnapshot // what the record says of the web side, once recording
	// released: the dialog was handed over, its record is another's
	// (siprestore.go); read by the recorder's goroutine.
	released  atomic.Bool
	replacing *leg // incoming with Replaces: the web leg of the call it replaces (attended.go)
}

type sipReoffer struct {
	corr string // on the web side
	ro   reofferAnswer
}

func (h *Handler) newFarLeg(c *Call, out bool) *farLeg {
	fl := &farLeg{h: h, c: c, out: out, phase: inRinging, done: make(chan struct{}), unfenced: make(chan struct{}, 1)}
	log := h.log
	if out {
		fl.phase = outCalling
		log = log.With("session_id", c.caller.ep.ID(), "subsession_id", c.caller.sub)
	}
	fl.logp.Store(log)
	fl.ops = fl.opsBuf[:0]
	c.far = fl
	return fl
}

// log is the leg's logger: it names the web session once there is one
// (the caller, or the callee that answered) and the SIP call once dialled.
func (fl *farLeg) log() *slog.Logger { return fl.logp.Load() }

// rlog is the leg's logger for lines that SIP peers and clients cause,
// within the handler's budgets (ratelog).
func (fl *farLeg) rlog() *ratelog.Logger { return fl.h.rlog.To(fl.log()) }

// logWith adds attributes to the leg's logger. c.mu is held.
func (fl *farLeg) logWith(args ...any) { fl.logp.Store(fl.log().With(args...)) }

// work runs the queued operations, then exits; the operations of a call
// that is over are dropped.
func (fl *farLeg) work() {
	for {
		fl.opMu.Lock()
		if len(fl.ops) == 0 || fl.over() {
			clear(fl.ops)
			fl.ops, fl.running = fl.opsBuf[:0], false
			fl.opMu.Unlock()
			return
		}
		// Shifted rather than resliced, so that the slice keeps its
		// room and queueing allocates nothing.
		op := fl.ops[0]
		n := copy(fl.ops, fl.ops[1:])
		fl.ops[n] = nil
		fl.ops = fl.ops[:n]
		fl.opMu.Unlock()
		op()
	}
}

func (fl *farLeg) over() bool {
	select {
	case <-fl.done:
		return true
	default:
		return false
	}
}

// push queues op, starting a worker when none runs; false when bounded
// and farQueue operations already wait.
func (fl *farLeg) push(op func(), bounded bool) bool {
	fl.opMu.Lock()
	if bounded && len(fl.ops) >= farQueue {
		fl.opMu.Unlock()
		return false
	}
	fl.ops = append(fl.ops, op)
	start := !fl.running
	fl.running = true
	fl.opMu.Unlock()
	if start {
		fl.h.far.wg.Go(fl.work)
	}
	return true
}

// enqueue hands op to the worker; false when the queue is full. Whoever
// asked for op must then be told (busy): nothing is dropped in silence.
func (fl *farLeg) enqueue(op func()) bool { return fl.push(op, true) }

// failReason is the reason of an error frame of code for a SIP request
// that failed with err: the code's own, but for a request refused before
// it left because the call's state could not be recorded, which says so.
func failReason(code int, err error) string {
	if errors.Is(err, sipgw.ErrNotRecorded) {
		return sipgw.ErrNotRecorded.Reason
	}
	return protocol.Reason(code)
}

// busyReason is the reason of a 503 for a request the queue refused.
const busyReason = "too many pending requests"

// busy refuses the web request f of l, whose SIP operation found the
// queue full: the sender hears 503 and may try again, and the refusal is
// counted. The web side is not held up instead: its frames arrive under
// c.mu, which the queued operations need to finish.
func (fl *farLeg) busy(l *leg, f *protocol.Frame, op queuedOp) {
	fl.h.refused[op].Add(1)
	fl.h.send(l, errorFrame(f, protocol.CodeServiceUnavailable, busyReason), false)
}

// must queues op even when the queue is full. For what may not be lost:
// ACK, answer, reject, hang-up.
func (fl *farLeg) must(op func()) { fl.push(op, false) }

// runOrQueue runs op on the caller when no other operation runs or waits
// (saving a goroutine hand-off), else queues it as must does. Only for
// operations that return promptly (a datagram or segment written, no
// transaction waited for): the caller may hold c.mu.
func (fl *farLeg) runOrQueue(op func()) {
	fl.opMu.Lock()
	if fl.running {
		fl.ops = append(fl.ops, op)
		fl.opMu.Unlock()
		return
	}
	if fl.over() {
		fl.opMu.Unlock()
		return
	}
	fl.running = true
	fl.opMu.Unlock()
	op()
	fl.opMu.Lock()
	start := len(fl.ops) > 0
	fl.running = start
	fl.opMu.Unlock()
	if start {
		fl.h.far.wg.Go(fl.work)
	}
}

// hangup ends the SIP side: CANCEL, reject or BYE as its state requires;
// ext: the extension headers of the web frame that ended it.
func (fl *farLeg) hangup(ext ...sipgw.Header) { fl.hangupWith(0, "", ext...) }

// hangupWith is hangup for a cause SIP should hear (code not 0): a reject
// with it, or a BYE with a Reason header (sipgw.Call.HangupWith).
func (fl *farLeg) hangupWith(code int, reason string, ext ...sipgw.Header) {
	fl.must(func() {
		if fl.sc == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout())
		defer cancel()
		hang := func(ctx context.Context) error { return fl.sc.Hangup(ctx, ext...) }
		if code != 0 {
			hang = func(ctx context.Context) error { return fl.sc.HangupWith(ctx, code, reason) }
		}
		if err := hang(ctx); err != nil {
			fl.rlog().Info("sip hangup", "SIP hangup failed", "err", err)
		}
	})
}

// opCtx is the context of one operation.
func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout())
}

// frameTo builds a frame on the web leg l of a SIP call.
func (fl *farLeg) frameTo(l *leg, typ protocol.Type, action protocol.Action, corr string) *protocol.Frame {
	init, target := fl.remote, l.ep.Identity()
	if fl.out {
		init, target = l.ep.Identity(), fl.c.target
	}
	return &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageCall, SubsessionID: l.sub, CorrelationID: corr},
		Header:  protocol.Header{Action: action, Initiator: init, Target: target},
	}
}

// web is the web leg that talks with SIP: the caller, or the callee that
// answered.
func (fl *farLeg) web() *leg {
	if fl.out {
		return fl.c.caller
	}
	return fl.c.winner
}

// dialSIP starts an outgoing SIP call for the web start f, to the target
// and trunk d routes it to. h.far is set.
func (h *Handler) dialSIP(ep Endpoint, f *protocol.Frame, p protocol.CallPayload, d routing.Decision) {
	h.dialSIPReplacing(ep, f, p, d, nil)
}

// dialSIPReplacing is dialSIP for a call that takes over the callee's
// dialog rep (an attended transfer, attended.go); rep nil: a plain call.
func (h *Handler) dialSIPReplacing(ep Endpoint, f *protocol.Frame, p protocol.CallPayload, d routing.Decision, rep *sipgw.Replaces) {
	local, err := parseSDP(p.SDP)
	if err != nil {
		ep.Send(errorFrame(f, protocol.CodeNotAcceptableHere, sdpReason(err)), false)
		return
	}
	headers, err := h.sipHeaders(f.Header.Ext)
	if err != nil {
		ep.Send(errorFrame(f, protocol.CodeBadRequest, err.Error()), false)
		return
	}
	if !acquireCall(ep) {
		ep.Send(errorFrame(f, protocol.CodeServiceUnavailable, "too many calls"), false)
		return
	}
	c := &Call{target: f.Header.Target}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.caller = &leg{call: c, ep: ep, sub: f.Control.SubsessionID, startCorr: protocol.ClientCorrelation(f), held: true}
	h.mu.Lock()
	h.calls[c] = struct{}{}
	h.legs[legKey{ep.ID(), c.caller.sub}] = c.caller
	h.mu.Unlock()
	fl := h.newFarLeg(c, true)
	fl.local = local
	// wsc.js ignores trickle: its candidates come in re-offers instead.
	o := sipgw.DialOptions{Identity: ep.Identity(), Target: d.Target, SDP: []byte(p.SDP),
		Headers: headers, Offer100rel: true, Trickle: !ep.Oracle(),
		Route: sipgw.Route{Trunk: d.Trunk, Sender: d.Sender, Headers: d.Headers, Transform: d.Transform}, Replaces: rep}
	if h.far.media != nil {
		o.CallID, o.FromTag = newDialogToken(), newDialogToken()
	}
	fl.log().Debug("SIP call started")
	// As for web callees: an unanswered call ends after the ring timeout
	// (CANCEL), whatever the SIP side's own timers.
	c.timer = time.AfterFunc(h.opts.RingTimeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ended || fl.phase.answered() {
			return
		}
		fl.webGone = true
		h.failCaller(c, protocol.CodeTemporarilyUnavail, "No answer")
		fl.hangup()
		h.endFar(c)
	})
	// The dial is the new leg's first operation: its queue is empty, and
	// a dial the queue refused would leave the call with no far side.
	fl.must(func() {
		if !fl.dialMedia(&o) {
			return
		}
		ctx, cancel := opCtx()
		sc, err := h.far.dial(ctx, o)
		cancel()
		if err != nil {
			code := protocol.ClientErrorCode(sipgw.ResponseCode(err))
			reason := protocol.Reason(code)
			if code == protocol.CodeBadRequest {
				reason = "target or header refused by the SIP side"
				fl.rlog().Warn("sip call refused", "call refused toward SIP", "target", o.Target, "err", err)
			}
			fl.failDial(code, reason)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		fl.sc = sc
		fl.logWith("call", sc.ID())
		h.addDialog(fl)
		h.far.wg.Go(fl.read)
		fl.recordInvite()
	})
}

// IncomingSIP offers an incoming SIP call to every live session of its
// identity (sipgw's OnIncomingCall). It returns at once.
func (h *Handler) IncomingSIP(sc *sipgw.Call) { h.incomingSIP(sipgwCall{sc}) }

func (h *Handler) incomingSIP(sc sipCall) {
	if h.far == nil {
		ctx, cancel := opCtx()
		defer cancel()
		_ = sc.Reject(ctx, 480, "")
		return
	}
	fl := h.takeIncoming(sc)
	if fl == nil {
		return
	}
	if h.far.media == nil {
		fl.ringOut(string(sc.Offer()))
		return
	}
	// rtpengine's offer for the browsers is a round trip: on the worker.
	fl.must(func() {
		if offer, ok := fl.ringMedia(string(sc.Offer())); ok {
			fl.ringOut(offer)
		}
	})
}

// takeIncoming makes the call of the incoming sc; nil: refused.
func (h *Handler) takeIncoming(sc sipCall) *farLeg {
	c := &Call{target: sc.Identity()}
	c.mu.Lock()
	defer c.mu.Unlock()
	fl := h.newFarLeg(c, false)
	fl.sc = sc
	fl.logWith("call", sc.ID())
	fl.remote = strings.TrimPrefix(sc.Remote(), "sip:")
	h.mu.Lock()
	h.calls[c] = struct{}{}
	h.mu.Unlock()
	h.addDialog(fl)
	h.far.wg.Go(fl.read)
	if rep, ok := sc.Replaces(); ok {
		// An attended transfer's new call (attended.go): it rings only
		// the session whose call it names, and nothing when it names none
		// (RFC 3891 section 3).
		fl.replacing = h.matchReplaces(rep)
		if fl.replacing == nil || fl.replacing.ep.Identity() != sc.Identity() {
			fl.reject(protocol.CodeNoSuchCall)
			return nil
		}
	}
	if _, err := parseSDP(string(sc.Offer())); err != nil {
		// Browsers need the offer in the INVITE, and one they can read
		// (RFC 3261 section 13.3.1.3).
		fl.rlog().Info("sip sdp", "incoming SIP call refused: its SDP does not parse", "err", err)
		fl.reject(protocol.CodeNotAcceptableHere)
		return nil
	}
	return fl
}

// ringOut rings the sessions of the incoming call with offer as the web
// side's SDP, their quotas taken out of the call's lock (acquireEach): a
// reservation's wait on the store would hold the SIP side's CANCEL. A
// call ended meanwhile rings nobody.
func (fl *farLeg) ringOut(offer string) {
	c, h := fl.c, fl.h
	// replacing is set before the call is shared.
	eps, replaces := h.dir.Sessions(fl.sc.Identity()), ""
	if r := fl.replacing; r != nil {
		eps, replaces = []Endpoint{r.ep}, r.sub
	}
	held := acquireEach(eps)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		releaseEach(eps, held)
		return
	}
	fl.ring(offer, eps, replaces, held)
}

// ring offers the incoming call to eps (ringOut's), with offer as the
// web side's SDP; held[i] says whether eps[i]'s quota was taken. c.mu is
// held.
func (fl *farLeg) ring(offer string, eps []Endpoint, replaces string, held []bool) {
	c, h, sc := fl.c, fl.h, fl.sc
	payload := protocol.EncodePayload(protocol.CallPayload{SDP: offer})
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
		out := fl.frameTo(l, protocol.TypeRequest, protocol.ActionStart, "")
		out.Payload = payload
		out.Header.Replaces = replaces
		out.Header.Ext = h.far.webExt(sc.Headers())
		seq, err := e.Send(out, true)
		if err != nil {
			l.state, l.code = legFailed, protocol.CodeTemporarilyUnavail
			continue
		}
		l.startCorr = "s" + strconv.FormatUint(seq, 10)
	}
	if fl.phase == inRinging && anyAsleep(c.callees) {
		// A callee's client sleeps in standby (docs/protocol.md §4.9): its
		// start waits, retained, while a push wakes it and it resumes. The
		// caller hears ringing meanwhile, as from the ringing callee it
		// becomes (no second 180 then); the ring timeout bounds the wait.
		fl.phase = inRang
		fl.must(func() {
			ctx, cancel := opCtx()
			defer cancel()
			if err := sc.Progress(ctx, protocol.CodeRinging, nil, false); err != nil {
				fl.log().Debug("SIP 180 for a callee in standby not sent", "err", err)
			}
		})
	}
	fl.log().Debug("incoming SIP call", "identity", sc.Identity(), "legs", len(c.callees))
	c.ringUntil = time.Now().Add(h.opts.RingTimeout)
	c.timer = time.AfterFunc(h.opts.RingTimeout, fl.ringTimeout)
	fl.settle()
}

// ringTimeout ends the incoming call unanswered at its ring timeout:
// 480 to the caller, a shutdown to each ringing leg.
func (fl *farLeg) ringTimeout() {
	c := fl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended && c.winner == nil {
		fl.cancelLegs(nil)
		fl.reject(protocol.CodeTemporarilyUnavail)
	}
}

// sleeper is an endpoint that can be asleep in standby, its socket
// closed until a push wakes it (gateway.Session).
type sleeper interface{ Asleep() bool }

// anyAsleep reports whether a callee still forked to sleeps in standby.
func anyAsleep(legs []*leg) bool {
	for _, l := range legs {
		if sl, ok := l.ep.(sleeper); ok && l.state != legFailed && sl.Asleep() {
			return true
		}
	}
	return false
}

// reject ends an unanswered incoming call with code. c.mu is held.
func (fl *farLeg) reject(code int) {
	sc := fl.sc
	fl.must(func() {
		ctx, cancel := opCtx()
		defer cancel()
		_ = sc.Reject(ctx, code, "")
	})
}

// settle rejects an unanswered incoming call once every fork failed,
// and records the forks still ringing (recordRinging). c.mu is held.
func (fl *farLeg) settle() {
	c := fl.c
	if c.winner != nil || c.ended || fl.finished {
		return
	}
	fl.recordRinging()
	best := 0
	for _, l := range c.callees {
		if l.state == legRinging {
			return
		}
		if best == 0 || l.code == protocol.CodeBusyHere {
			best = l.code
		}
	}
	if best < 300 || best > 699 {
		best = protocol.CodeTemporarilyUnavail
	}
	fl.reject(best)
}

// cancelLegs tells every ringing web leg but keep that the call is off.
func (fl *farLeg) cancelLegs(keep *leg) {
	for _, l := range fl.c.callees {
		if l == keep || l.state != legRinging {
			continue
		}
		fl.h.send(l, fl.frameTo(l, protocol.TypeMessage, protocol.ActionShutdown, l.startCorr), false)
		l.state = legFailed
	}
}

// endFar forgets the web side of a SIP call; the Call stays counted until
// its SIP side is over too (finishLocked). c.mu is held.
func (h *Handler) endFar(c *Call) {
	if c.ended {
		return
	}
	c.ended = true
	if c.timer != nil {
		c.timer.Stop()
	}
	legs := c.callees
	if c.caller != nil {
		legs = append([]*leg{c.caller}, legs...)
	}
	h.mu.Lock()
	for _, l := range legs {
		delete(h.legs, legKey{l.ep.ID(), l.sub})
	}
	h.mu.Unlock()
	for _, l := range legs {
		if l.held {
			l.held = false
			releaseCall(l.ep)
		}
	}
}

// finishLocked forgets the call once both sides are over. c.mu is held.
func (fl *farLeg) finishLocked() {
	if fl.finished {
		return
	}
	fl.finished = true
	close(fl.done)
	fl.h.dropDialog(fl)
	if len(fl.trickle) > 0 {
		fl.log().Debug("ICE candidates never given to SIP dropped", "lines", len(fl.trickle))
	}
	fl.h.mu.Lock()
	delete(fl.h.calls, fl.c)
	fl.h.signalIdleLocked()
	fl.h.mu.Unlock()
}

// read turns SIP events into web frames until the SIP call is over. The
// end of a call anchored in rtpengine is stepped once its media is
// deleted, so that the web side's shutdown carries the delete's figures
// (endPayload): it waits for the delete, at most media.timeout.
//
// Events are stepped in the order SIP sent them, and after the answer of
// an exchange SIP completed before them: while a fenced operation is on
// the worker (webOffer, webPrack), whose answer still has to pass
// rtpengine or c.mu on its way to the web side, the events that come are
// held here and stepped once it is done. Without that, a BYE right
// behind the ACK of our re-INVITE ended the web side before it had the
// re-offer's answer, and a 200 to the INVITE right behind the 200 of a
// PRACK that offered reached it before the PRACK's answer. The wait is
// bounded by the operation's own deadlines (opTimeout, media.timeout).
// A re-offer with nothing held is stepped at once while our re-INVITE
// has not gone (glare: 491), and held once it has: sipgw answers 491
// itself to a re-INVITE that crosses ours, so one that reaches us then
// came either before ours went (which then fails with 491 at once) or
// after its answer, which RFC 3261 section 14.2 makes no glare: it
// reaches the web side after the answer to the web side's re-offer.
func (fl *farLeg) read() {
	var (
		ended bool
		last  *sipgw.Event // an anchored call's end, stepped after the delete
		held  []sipgw.Event
	)
	step := func(ev sipgw.Event) {
		if ev.Kind == sipgw.EventEnded {
			fl.c.mu.Lock()
			anchored := fl.anchored()
			fl.c.mu.Unlock()
			if anchored {
				last = &ev
				return
			}
		}
		fl.onEvent(fl.sipMedia(ev))
	}
	flush := func() {
		for _, ev := range held {
			step(ev)
		}
		clear(held)
		held = held[:0]
	}
	events := fl.sc.Events()
	for events != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				break
			}
			ended = ended || ev.Kind == sipgw.EventEnded
			if fenced, reinviting := fl.fenced(); fenced && (len(held) > 0 || ev.Kind != sipgw.EventReoffer || reinviting) {
				if len(held) < farQueue {
					held = append(held, ev)
					break
				}
				// A peer that sends this much during one exchange
				// gets its events stepped as they come.
				fl.rlog().Info("sip events", "SIP events stepped ahead of a pending answer", "held", len(held))
			}
			flush()
			step(ev)
		case <-fl.unfenced:
			if fenced, _ := fl.fenced(); !fenced {
				flush()
			}
		}
	}
	for {
		if fenced, _ := fl.fenced(); !fenced {
			break
		}
		<-fl.unfenced
	}
	flush()
	if !ended {
		// The SIP side closed before it could report the end.
		fl.onEvent(sipgw.Event{Kind: sipgw.EventEnded, End: sipgw.EndShutdown, Code: protocol.CodeServiceUnavailable}, nil)
	}
	<-fl.sc.Done()
	legs := fl.releaseMedia()
	fl.c.mu.Lock()
	fl.endMedia = legs
	fl.c.mu.Unlock()
	if last != nil {
		fl.onEvent(*last, nil)
	}
	fl.c.mu.Lock()
	fl.figuresToHangup()
	fl.finishLocked()
	fl.c.mu.Unlock()
}

// fenced reports whether a fenced operation is queued or running, and
// whether our re-INVITE has gone to SIP.
func (fl *farLeg) fenced() (fenced, reinviting bool) {
	fl.c.mu.Lock()
	defer fl.c.mu.Unlock()
	return fl.fence > 0, fl.reinviting
}

// enqueueFenced is enqueue for an operation that hands the web side the
// answer of a SIP exchange: SIP's events wait behind it (read). c.mu is
// held.
func (fl *farLeg) enqueueFenced(op func()) bool {
	fl.fence++
	ok := fl.enqueue(func() {
		defer fl.unfence()
		op()
	})
	if !ok {
		fl.fence--
	}
	return ok
}

// unfence ends a fenced operation; the reader steps what it held once
// none is left.
func (fl *farLeg) unfence() {
	fl.c.mu.Lock()
	defer fl.c.mu.Unlock()
	fl.fence--
	if fl.fence == 0 {
		select {
		case fl.unfenced <- struct{}{}:
		default:
		}
	}
}

func (fl *farLeg) onEvent(ev sipgw.Event, mediaErr error) {
	fl.c.mu.Lock()
	defer fl.c.mu.Unlock()
	fl.step(eventInput(ev), bySIP, sipArgs{ev: ev, mediaErr: mediaErr})
}

// sipArgs are what an action acts on: the SIP event, or the web frame
// and its leg (code: the failure a leaving callee counts as).
type sipArgs struct {
	ev   sipgw.Event
	l    *leg
	f    *protocol.Frame
	code int
	// mediaErr: rtpengine failed to convert the event's SDP (sipMedia).
	mediaErr error
}

// phaseNow is the call's phase; over once the web side is done.
func (fl *farLeg) phaseNow() sipPhase {
	if fl.c.ended {
		return phaseOver
	}
	return fl.phase
}

// roleOf says who l is on this call.
func (fl *farLeg) roleOf(l *leg) sipRole {
	switch {
	case l == fl.web():
		return byWeb
	case !fl.out && fl.c.winner == nil && l.state == legRinging:
		return byFork
	default:
		return byOther
	}
}

// step feeds one input to the state machine (sipNext) and runs the action
// it names; the phase moves when the action did not fail. Entering a
// confirmed phase sends the candidates that waited for it (trickle.go).
// c.mu is held.
func (fl *farLeg) step(in sipInput, r sipRole, a sipArgs) {
	from := fl.phaseNow()
	next, act := sipNext(from, in, r)
	if !fl.do(act, a) || next == from || next == phaseOver {
		// Over is Call.ended, which the action set (or the SIP side's
		// end will).
		return
	}
	fl.phase = next
	if next == outConfirmed || next == inConfirmed {
		fl.flushTrickle()
		fl.recordDialog()
	}
}

// do runs act; false when it failed and the phase must stay.
func (fl *farLeg) do(act sipAction, a sipArgs) bool {
	if a.mediaErr != nil && mediaOf(act) != mediaNone {
		return fl.sipMediaFailed(act, a.ev)
	}
	switch act {
	case actEnded:
		fl.ended(a.ev)
	case actReofferGone:
		_ = fl.sc.reoffer(a.ev).Reject(481, "")
	case actReofferPending:
		_ = fl.sc.reoffer(a.ev).Reject(491, "")
	case actRelayProgress:
		return fl.sipProgress(a.ev, false)
	case actRelayProgressPrack:
		return fl.sipProgress(a.ev, true)
	case actRelayAnswer:
		return fl.sipAnswered(a.ev)
	case actRelayComplete:
		fl.sipConfirmed()
	case actRelayReoffer:
		fl.sipReoffered(a.ev)
	case actRelayInfo:
		fl.sipInfo(a.ev)
	case actRelayRefer:
		fl.sipRefer(a.ev)
	case actReferGone:
		_ = fl.sc.refer(a.ev).Reject(481, "")
	case actReferPending:
		_ = fl.sc.refer(a.ev).Reject(491, "")
	case actAnswerRefer:
		fl.webAnswerRefer(a.l, a.f)
	case actRejectRefer:
		fl.webRejectRefer(a.l, a.f)
	case actReferProgress:
		fl.webReferProgress(a.l, a.f)
	case actRelayTransferProgress:
		fl.sipTransferProgress(a.ev)
	case actRelayRemoteSDP:
		fl.sipRemoteSDP(a.ev)
	case actReoffer:
		fl.webOffer(a.l, a.f, false)
	case actEarlyOffer:
		fl.webOffer(a.l, a.f, true)
	case actNotEstablished:
		fl.h.send(a.l, errorFrame(a.f, protocol.CodeRequestPending, "the call is not established"), false)
	case actAnswerReoffer:
		fl.webAnswerReoffer(a.l, a.f)
	case actRejectReoffer:
		fl.webRejectReoffer(a.l, a.f)
	case actProgress:
		return fl.forkProgress(a.l, a.f)
	case actAnswer:
		return fl.forkAnswer(a.l, a.f)
	case actForkDeclines:
		fl.forkDeclines(a.l, a.f)
	case actAck:
		fl.ack()
	case actHangup:
		fl.noteHangup(a.l, a.f)
		fl.webGone = true
		fl.hangup(frameExt(a.f)...)
		fl.h.endFar(fl.c)
	case actForkLeaves:
		a.l.state, a.l.code = legFailed, a.code
		fl.settle()
	case actPrack:
		return fl.webPrack(a.l, a.f)
	case actPrackLocal:
		// Nothing reliable to acknowledge: answered locally, as the
		// relay does, without response_code.
		fl.prackReply(a.l, a.f, 0, "")
	case actDTMF:
		fl.webDTMF(a.l, a.f)
	case actTransfer:
		fl.webTransfer(a.l, a.f)
	case actTrickle:
		fl.webTrickle(a.l, a.f)
	case actBufferTrickle:
		fl.bufferTrickle(a.l, a.f)
	}
	return true
}

// sipMediaFailed: rtpengine did not convert the SDP of the SIP event ev
// that act would have handed on. A re-offer is refused (503) and the call
// goes on as it was; an answer ends the call (503 to the web caller).
// c.mu is held.
func (fl *farLeg) sipMediaFailed(act sipAction, ev sipgw.Event) bool {
	if act == actRelayReoffer {
		_ = fl.sc.reoffer(ev).Reject(protocol.CodeServiceUnavailable, "")
		return true
	}
	// An answer (to the first offer, or the one in the ACK of a
	// re-INVITE without SDP) rtpengine does not relay: nothing would
	// carry the media as agreed.
	fl.mediaFail()
	return false
}

// sipProgress relays a provisional to the web caller, and with prack
// acknowledges it toward SIP; false when its SDP ended the call.
func (fl *farLeg) sipProgress(ev sipgw.Event, prack bool) bool {
	c, h := fl.c, fl.h
	out := fl.frameTo(c.caller, protocol.TypeResponse, protocol.ActionStart, c.caller.startCorr)
	out.Control.MessageState = protocol.StateSubsequent
	out.Header.ResponseCode, out.Header.Reason = ev.Code, protocol.Reason(ev.Code)
	out.Header.Ext = h.far.webExt(ev.Headers)
	if protocol.HasSDP(string(ev.SDP)) {
		if _, err := parseSDP(string(ev.SDP)); err != nil {
			fl.badSIPSDP(err)
			return false
		}
		out.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: string(ev.SDP)})
		fl.earlySDP = out.Payload
		fl.earlyAnswer = fl.earlyAnswer || ev.Reliable
	}
	if prack {
		// Queued even on a full queue: the SIP peer sends no other
		// reliable provisional before this one is acknowledged (RFC
		// 3262 section 3), so these are one at a time, and one left
		// out would end the call (its 2xx never comes).
		fl.must(func() {
			ctx, cancel := opCtx()
			defer cancel()
			_, _ = fl.sc.Prack(ctx, nil)
		})
	}
	h.send(c.caller, out, false)
	return true
}

// sipAnswered relays the 2xx to the web caller; false when its SDP ended
// the call.
func (fl *farLeg) sipAnswered(ev sipgw.Event) bool {
	c, h := fl.c, fl.h
	if protocol.HasSDP(string(ev.SDP)) {
		if _, err := parseSDP(string(ev.SDP)); err != nil {
			fl.badSIPSDP(err)
			return false
		}
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	fl.remoteTag = ev.ToTag
	c.caller.state = legAnswered
	out := fl.frameTo(c.caller, protocol.TypeResponse, protocol.ActionStart, c.caller.startCorr)
	out.Control.MessageState = protocol.StateFinal
	out.Header.ResponseCode, out.Header.Reason = protocol.CodeOK, "OK"
	out.Header.Ext = h.far.webExt(ev.Headers)
	out.Payload = fl.earlySDP
	if protocol.HasSDP(string(ev.SDP)) {
		out.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: string(ev.SDP)})
	}
	h.send(c.caller, out, false)
	return true
}

// sipConfirmed: an ACK arrived; if it completes an answer of the web
// side, the web side hears complete.
func (fl *farLeg) sipConfirmed() {
	w := fl.web()
	if w == nil || fl.completeCorr == "" {
		return
	}
	out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionComplete, fl.completeCorr)
	fl.completeCorr = ""
	fl.h.send(w, out, false)
}

// sipReoffered hands a re-INVITE's offer to the web side.
func (fl *farLeg) sipReoffered(ev sipgw.Event) {
	ro := fl.sc.reoffer(ev)
	w := fl.web()
	if w == nil || fl.webReoffer != "" || fl.sipReoffer != nil {
		_ = ro.Reject(491, "")
		return
	}
	if len(ev.SDP) > 0 {
		// The session stays as it was (RFC 3261 section 14.2);
		// the web side saw nothing of it.
		if _, err := parseSDP(string(ev.SDP)); err != nil {
			fl.rlog().Info("sip sdp", "SIP re-offer refused: its SDP does not parse", "err", err)
			_ = ro.Reject(protocol.CodeNotAcceptableHere, "")
			return
		}
	}
	out := fl.frameTo(w, protocol.TypeRequest, protocol.ActionStart, "")
	out.Header.Initiator, out.Header.Target = fl.remoteName(), w.ep.Identity()
	out.Header.Ext = fl.h.far.webExt(ev.Headers)
	out.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: string(ev.SDP)})
	seq, err := w.ep.Send(out, true)
	if err != nil {
		_ = ro.Reject(480, "")
		return
	}
	fl.sipReoffer = &sipReoffer{corr: "s" + strconv.FormatUint(seq, 10), ro: ro}
}

// sipInfo hands DTMF or candidates from SIP to the web side (not to
// wsc.js, which knows neither).
func (fl *farLeg) sipInfo(ev sipgw.Event) {
	w := fl.web()
	if ev.InfoRequest != nil {
		fl.sipDeclared(w, ev)
		return
	}
	if w == nil || w.ep.Oracle() {
		return
	}
	if ev.ContentType == sipgw.ContentTypeTrickleICE {
		fl.sipTrickle(w, ev.Body)
		return
	}
	if ev.Digit == "" {
		return
	}
	out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionDTMF, "")
	out.Header.Initiator, out.Header.Target = fl.remoteName(), w.ep.Identity()
	out.Header.Ext = fl.h.far.webExt(ev.Headers)
	out.Payload = protocol.EncodePayload(protocol.CallPayload{Digits: ev.Digit, Duration: ev.Duration})
	fl.h.send(w, out, false)
}

// remoteName is the SIP party as the web side names it.
func (fl *farLeg) remoteName() string {
	if fl.out {
		return fl.c.target
	}
	return fl.remote
}

// badSIPSDP ends the call over an SDP from SIP (in an 18x, a 2xx, or
// the answer to a web re-offer) that does not parse: the offer/answer
// exchange failed, so there is no media session to wait for. The SIP
// side gets a CANCEL, or the ACK and a BYE (RFC 3261 section 13.2.2.4);
// an unanswered web caller gets 488, an answered web side a shutdown.
// c.mu is held.
func (fl *farLeg) badSIPSDP(err error) {
	fl.rlog().Info("sip sdp", "SIP call ended: its SDP does not parse", "err", err)
	fl.failSIP(protocol.CodeNotAcceptableHere, sdpReason(err))
}

// failSIP ends the call because an SDP from SIP could not be handed on:
// the web caller, unanswered, gets code and reason, an answered web side a
// shutdown; SIP a CANCEL, or the ACK and a BYE. c.mu is held.
func (fl *farLeg) failSIP(code int, reason string) {
	c, h := fl.c, fl.h
	switch w := fl.web(); {
	case fl.out && !fl.phase.answered():
		h.failCaller(c, code, reason)
	case w != nil:
		fl.sendShutdown(w)
	}
	fl.webGone = true
	fl.hangup()
	h.endFar(c)
}

// sendShutdown tells the web leg w that the call is over.
func (fl *farLeg) sendShutdown(w *leg) { fl.shutdownWith(w, "", nil) }

// shutdownWith is sendShutdown with a reason (docs/protocol.md §5.8),
// and the payload, if any.
func (fl *farLeg) shutdownWith(w *leg, reason string, payload json.RawMessage) {
	out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionShutdown, "")
	if !fl.out {
		out.Header.Initiator, out.Header.Target = fl.remote, w.ep.Identity()
	}
	out.Header.Reason = reason
	if payload != nil {
		out.Payload = payload
	}
	fl.h.send(w, out, true)
}

// ended reports the end of the SIP call to the web side. c.mu is held.
func (fl *farLeg) ended(ev sipgw.Event) {
	c := fl.c
	h := fl.h
	if fl.sipReoffer != nil {
		fl.sipReoffer = nil
	}
	if c.ended || fl.webGone {
		h.endFar(c)
		return
	}
	switch {
	case fl.out && !fl.phase.answered():
		code := protocol.ClientErrorCode(ev.Code)
		reason := ev.Reason
		if reason == "" || code != ev.Code {
			reason = protocol.Reason(code)
		}
		h.failCaller(c, code, reason)
	case fl.out:
		out := fl.frameTo(c.caller, protocol.TypeMessage, protocol.ActionShutdown, "")
		out.Header.Reason = endReason(ev)
		out.Header.Ext = h.far.webExt(ev.Headers)
		out.Payload = fl.endPayload()
		h.send(c.caller, out, true)
	case c.winner != nil:
		w := c.winner
		if ev.End == sipgw.EndRemoteBye && fl.completeCorr != "" {
			// The caller's BYE overtook the report of its ACK (a BYE
			// follows the ACK): complete first, as it happened.
			h.send(w, fl.frameTo(w, protocol.TypeMessage, protocol.ActionComplete, fl.completeCorr), false)
			fl.completeCorr = ""
		}
		out := fl.frameTo(w, protocol.TypeMessage, protocol.ActionShutdown, "")
		out.Header.Initiator, out.Header.Target = fl.remote, w.ep.Identity()
		out.Header.Reason = endReason(ev)
		out.Header.Ext = h.far.webExt(ev.Headers)
		out.Payload = fl.endPayload()
		h.send(w, out, true)
	default:
		// A CANCEL, or our own reject: stop every fork still ringing.
		fl.cancelLegs(nil)
	}
	h.endFar(c)
}

// endReason is the reason of the shutdown that reports ev after the
// answer: only an end the web side could not guess from a BYE has one
// (a session timer that ran out, docs/protocol.md §5.8).
func endReason(ev sipgw.Event) string {
	if ev.End == sipgw.EndSessionExpired {
		return ev.Reason
	}
	return ""
}

// frame handles a web frame on a SIP call. c.mu is held.
func (fl *farLeg) frame(l *leg, f *protocol.Frame) {
	if !protocol.KnownAction(protocol.PackageCall, f.Header.Action) {
		fl.declaredAnswer(f) // a declared action's (template.go)
		return
	}
	fl.step(frameInput(f), fl.roleOf(l), sipArgs{l: l, f: f, code: protocol.CodeDecline})
}

// sessionEnded: ep's session ended while on the SIP call of l; a ringing
// callee counts as unavailable. c.mu is held.
func (fl *farLeg) sessionEnded(l *leg) {
	fl.step(frameLeave, fl.roleOf(l), sipArgs{l: l, code: protocol.CodeTemporarilyUnavail})
}

// ack: the web caller completed the answer.
func (fl *farLeg) ack() {
	// The ACK is one write, no transaction: sent from here, it leaves
	// without waking another goroutine. Candidates queued after it find
	// the dialog confirmed.
	fl.runOrQueue(func() {
		// No deadline to bound: sipgw waits for nothing.
		if err := fl.sc.Ack(context.Background(), nil); err != nil {
			fl.log().Debug("SIP ACK", "err", err)
		}
	})
}

// prackReply answers the web PRACK f: a response, or with code >= 300 an
// error.
func (fl *farLeg) prackReply(l *leg, f *protocol.Frame, code int, reason string) {
	out := fl.frameTo(l, protocol.TypeResponse, protocol.ActionPrack, protocol.ClientCorrelation(f))
	out.Control.MessageState = protocol.StateFinal
	if code >= 300 {
		out.Control.Type, out.Control.MessageState = protocol.TypeError, ""
		out.Header.ErrorCode, out.Header.Reason = code, reason
	}
	fl.h.send(l, out, false)
}

// webPrack sends the web caller's PRACK of a reliable 183 to SIP; false
// when it did not go (its SDP, or a full queue) and is still owed. Its
// SDP is an offer (our INVITE carried the first one, so there is nothing
// else for it to be), allowed once a reliable provisional answered the
// INVITE's (RFC 6337 section 3.1); the answer in the PRACK's 200 goes
// back in the response. Both go through rtpengine when the call is
// anchored, as a re-offer's do (docs/protocol.md §5.6).
func (fl *farLeg) webPrack(l *leg, f *protocol.Frame) bool {
	c := fl.c
	var p protocol.CallPayload
	_ = protocol.DecodePayload(f.Payload, &p)
	offered := protocol.HasSDP(p.SDP)
	if offered {
		local, err := parseSDP(p.SDP)
		if err != nil {
			fl.prackReply(l, f, protocol.CodeNotAcceptableHere, sdpReason(err))
			return false
		}
		if !fl.earlyAnswer {
			// The INVITE's offer is unanswered: a second offer would
			// cross it (RFC 3264 section 4).
			fl.prackReply(l, f, protocol.CodeRequestPending, "the offer is not answered yet")
			return false
		}
		fl.setLocalSDP(local)
	}
	media := fl.media
	if !fl.enqueueFenced(func() {
		answer, err := fl.sendPrack(media, p.SDP)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ended {
			return
		}
		var se *prackSDPError
		switch {
		case errors.As(err, &se) && se.media:
			fl.prackReply(l, f, protocol.CodeServiceUnavailable, mediaReason)
			fl.mediaFail()
		case errors.As(err, &se):
			fl.prackReply(l, f, protocol.CodeNotAcceptableHere, sdpReason(se.err))
			fl.badSIPSDP(se.err)
		case err != nil:
			fl.prackReply(l, f, protocol.ClientErrorCode(sipgw.ResponseCode(err)), "PRACK failed")
		case offered:
			fl.prackAnswer(l, f, answer)
		default:
			fl.prackReply(l, f, 0, "")
		}
	}) {
		fl.h.refused[opPrack].Add(1)
		fl.prackReply(l, f, protocol.CodeServiceUnavailable, busyReason)
		return false
	}
	return true
}

// prackSDPError: the PRACK's offer or SIP's answer failed in rtpengine
// (media), or the answer did not parse (err): the call can carry no
// media as agreed and ends.
type prackSDPError struct {
	err   error
	media bool
}

func (e *prackSDPError) Error() string { return e.err.Error() }

// sendPrack sends the web caller's PRACK with its offer, if any, through
// media, and returns SIP's answer as the web side gets it. On the worker.
func (fl *farLeg) sendPrack(media *rtpengine.Session, offer string) (string, error) {
	if offer != "" {
		var err error
		if offer, err = fl.webOfferMedia(media, offer); err != nil {
			return "", &prackSDPError{err, true}
		}
	}
	ctx, cancel := opCtx()
	answer, err := fl.sc.Prack(ctx, []byte(offer))
	cancel()
	if err != nil && offer != "" {
		// The early session stays as the 183 made it (RFC 3264 §5).
		fl.rollbackMedia(media)
	}
	if err != nil || offer == "" {
		return "", err
	}
	if _, err := parseSDP(string(answer)); err != nil {
		return "", &prackSDPError{err, false}
	}
	if answer, err = fl.webReanswerMedia(media, answer); err != nil {
		return "", &prackSDPError{err, true}
	}
	return string(answer), nil
}

// prackAnswer answers the web PRACK f that offered with SIP's answer, which
// is the early session's description from now on: a 2xx without SDP
// repeats it (sipAnswered). c.mu is held.
func (fl *farLeg) prackAnswer(l *leg, f *protocol.Frame, answer string) {
	out := fl.frameTo(l, protocol.TypeResponse, protocol.ActionPrack, protocol.ClientCorrelation(f))
	out.Control.MessageState = protocol.StateFinal
	out.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: answer})
	fl.earlySDP = out.Payload
	fl.h.send(l, out, false)
}

// webDTMF sends the web side's digits to SIP.
func (fl *farLeg) webDTMF(l *leg, f *protocol.Frame) {
	h := fl.h
	if fl.sc == nil {
		return
	}
	var p protocol.CallPayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		h.send(l, errorFrame(f, protocol.CodeOf(err), protocol.ReasonOf(err)), false)
		return
	}
	digits, dur := p.Digits, time.Duration(p.Duration)*time.Millisecond
	if !fl.enqueue(func() {
		ctx, cancel := opCtx()
		defer cancel()
		for _, d := range digits {
			if err := fl.sc.SendDTMF(ctx, string(d), dur, frameExt(f)...); err != nil {
				fl.log().Debug("SIP DTMF", "err", err)
				if errors.Is(err, sipgw.ErrNotRecorded) {
					// Not sent: the web side hears it, as of a full queue.
					fl.c.mu.Lock()
					h.send(l, errorFrame(f, protocol.CodeServiceUnavailable, sipgw.ErrNotRecorded.Reason), false)
					fl.c.mu.Unlock()
				}
				return
			}
		}
	}) {
		fl.busy(l, f, opDTMF)
	}
}

// webOffer: a start request on the call, i.e. a re-offer: a re-INVITE,
// or before the answer (early) an UPDATE in the early dialog of the
// reliable 183 the caller PRACKed (docs/protocol.md §5.9).
func (fl *farLeg) webOffer(l *leg, f *protocol.Frame, early bool) {
	h := fl.h
	var p protocol.CallPayload
	if protocol.DecodePayload(f.Payload, &p) != nil || !protocol.HasSDP(p.SDP) {
		l.ep.Send(errorFrame(f, protocol.CodeNotAcceptableHere, "a re-offer needs SDP"), false)
		return
	}
	local, err := parseSDP(p.SDP)
	if err != nil {
		l.ep.Send(errorFrame(f, protocol.CodeNotAcceptableHere, sdpReason(err)), false)
		return
	}
	if fl.webReoffer != "" || fl.sipReoffer != nil {
		l.ep.Send(errorFrame(f, protocol.CodeRequestPending, "Glare"), false)
		return
	}
	if early && !fl.earlyAnswer {
		// The 183 the caller PRACKed had no SDP: the INVITE's offer is
		// unanswered, and a second one would cross it (RFC 3264 §4).
		l.ep.Send(errorFrame(f, protocol.CodeRequestPending, "the offer is not answered yet"), false)
		return
	}
	send := fl.sc.Reoffer
	if early {
		send = fl.sc.UpdateEarly
	}
	corr := protocol.ClientCorrelation(f)
	fl.webReoffer = corr
	fl.notePending()
	c := fl.c
	offer := fl.foldTrickle(p.SDP, local)
	fl.setLocalSDP(local)
	media := fl.media
	if !fl.enqueueFenced(func() {
		// rollback: the re-offer failed after it went to rtpengine, which
		// must hold the session in force again; done once the web side
		// heard of the failure, after c.mu is released, with SIP's
		// events, re-offers too, held on the reader (reinviting) so that
		// none of its commands comes between the rollback's two.
		rollback := false
		defer func() {
			if rollback {
				fl.rollbackMedia(media)
				c.mu.Lock()
				fl.reinviting = false
				c.mu.Unlock()
			}
		}()
		offer, err := fl.webOfferMedia(media, offer)
		if err != nil {
			c.mu.Lock()
			defer c.mu.Unlock()
			fl.webReoffer = ""
			fl.notePending()
			if !c.ended {
				fl.reofferFailed(l, corr, protocol.CodeServiceUnavailable, mediaReason)
				// No reply: it may have been lost after rtpengine took
				// the offer. A refusal took nothing.
				var re *rtpengine.Error
				rollback = !errors.As(err, &re) && !errors.Is(err, rtpengine.ErrLost)
				fl.reinviting = rollback
			}
			return
		}
		c.mu.Lock()
		fl.reinviting = true
		c.mu.Unlock()
		ctx, cancel := opCtx()
		answer, hs, err := send(ctx, []byte(offer), frameExt(f)...)
		cancel()
		var mediaErr error
		if err == nil {
			if _, perr := parseSDP(string(answer)); perr == nil {
				answer, mediaErr = fl.webReanswerMedia(media, answer)
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		fl.webReoffer, fl.reinviting = "", false
		fl.notePending()
		if c.ended {
			return
		}
		if mediaErr != nil {
			fl.reofferFailed(l, corr, protocol.CodeServiceUnavailable, mediaReason)
			fl.mediaFail()
			return
		}
		switch {
		case errors.Is(err, sipgw.ErrUpdateNotAllowed):
			fl.reofferFailed(l, corr, protocol.CodeMethodNotAllowed, "the callee does not allow UPDATE before the answer")
			rollback, fl.reinviting = true, true
			return
		case early && errors.Is(err, sipgw.ErrCallState):
			// The answer or a new reliable 183 overtook the offer.
			fl.reofferFailed(l, corr, protocol.CodeRequestPending, "no early dialog to update")
			rollback, fl.reinviting = true, true
			return
		case err != nil:
			code := protocol.ClientErrorCode(sipgw.ResponseCode(err))
			fl.reofferFailed(l, corr, code, failReason(code, err), h.far.errExt(err)...)
			rollback, fl.reinviting = true, true
			return
		}
		if _, err := parseSDP(string(answer)); err != nil {
			fl.reofferFailed(l, corr, protocol.CodeNotAcceptableHere, sdpReason(err))
			fl.badSIPSDP(err)
			return
		}
		out := fl.frameTo(l, protocol.TypeResponse, protocol.ActionStart, corr)
		out.Header.Initiator, out.Header.Target = l.ep.Identity(), fl.remoteName()
		out.Control.MessageState = protocol.StateFinal
		out.Header.ResponseCode, out.Header.Reason = protocol.CodeOK, "OK"
		out.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: string(answer)})
		out.Header.Ext = h.far.webExt(hs)
		if early {
			// The early session's description from now on: a 2xx
			// without SDP repeats it (sipAnswered).
			fl.earlySDP = out.Payload
		}
		h.send(l, out, false)
	}) {
		fl.webReoffer = ""
		fl.notePending()
		fl.busy(l, f, opReoffer)
	}
}

// reofferFailed answers the web re-offer corr of l with an error. The
// frame the re-offer came in is not kept past HandleFrame: its
// correlation is. c.mu is held.
func (fl *farLeg) reofferFailed(l *leg, corr string, code int, reason string, ext ...protocol.Ext) {
	out := fl.frameTo(l, protocol.TypeError, protocol.ActionStart, corr)
	out.Header.ErrorCode, out.Header.Reason = code, reason
	out.Header.Ext = ext
	fl.h.send(l, out, false)
}

// webAnswerReoffer: the web side's answer to a SIP re-offer.
func (fl *farLeg) webAnswerReoffer(l *leg, f *protocol.Frame) {
	h := fl.h
	r := fl.sipReoffer
	if r == nil || f.Control.CorrelationID != r.corr {
		return
	}
	var p protocol.CallPayload
	_ = protocol.DecodePayload(f.Payload, &p)
	fl.sipReoffer = nil
	if !protocol.HasSDP(p.SDP) {
		_ = r.ro.Reject(protocol.CodeNotAcceptableHere, "")
		return
	}
	local, err := parseSDP(p.SDP)
	if err != nil {
		// The re-INVITE cannot wait for a retry the web side may
		// never send: refused, the session stays as it was (RFC
		// 3261 section 14.2), and the web side learns why.
		_ = r.ro.Reject(protocol.CodeNotAcceptableHere, "")
		h.send(l, errorFrame(f, protocol.CodeNotAcceptableHere, sdpReason(err)), false)
		return
	}
	fl.completeCorr = r.corr
	if fl.anchored() {
		fl.answerReofferMedia(r, p.SDP)
		return
	}
	if err := r.ro.Accept([]byte(p.SDP)); err != nil {
		fl.completeCorr = ""
		return
	}
	fl.setLocalSDP(local)
}

// answerReofferMedia passes the web side's answer to SIP's re-offer
// through rtpengine, on the worker, then accepts the re-offer with it;
// 503 when rtpengine failed (the session stays as it was). c.mu is held.
func (fl *farLeg) answerReofferMedia(r *sipReoffer, answer string) {
	c, media := fl.c, fl.media
	fl.must(func() {
		out, err := fl.webAnswerMedia(media, []byte(answer), true)
		if err == nil {
			err = r.ro.Accept(out)
		} else {
			_ = r.ro.Reject(protocol.CodeServiceUnavailable, "")
		}
		if err != nil {
			c.mu.Lock()
			if fl.completeCorr == r.corr {
				fl.completeCorr = ""
			}
			c.mu.Unlock()
		}
	})
}

// forkProgress: a ringing callee's provisional, as a 180 (or with SDP a
// 183) toward SIP; false when it did not go.
func (fl *farLeg) forkProgress(l *leg, f *protocol.Frame) bool {
	h := fl.h
	sc := fl.sc
	// Our responses announce trickle-ice when the leg that sends them
	// can take candidates (wsc.js cannot) and is the phone's ICE peer
	// (not when rtpengine is).
	trickle := !l.ep.Oracle() && !fl.anchored()
	media := fl.media
	var p protocol.CallPayload
	_ = protocol.DecodePayload(f.Payload, &p)
	early := []byte(nil)
	code := protocol.CodeRinging
	if protocol.HasSDP(p.SDP) {
		local, err := parseSDP(p.SDP)
		if err != nil {
			h.send(l, errorFrame(f, protocol.CodeNotAcceptableHere, sdpReason(err)), false)
			return false
		}
		early, code = []byte(p.SDP), protocol.CodeSessionProgress
		fl.setLocalSDP(local)
	}
	if !fl.enqueue(func() {
		ctx, cancel := opCtx()
		defer cancel()
		// Early media goes reliably (RFC 3262) when the caller
		// supports 100rel: its PRACK is answered by sipgw, and our
		// 200 waits for it.
		if early != nil {
			var err error
			if early, err = fl.webAnswerMedia(media, early, false); err != nil {
				// No early media; the 200 may still come through.
				return
			}
		}
		sc.SetTrickle(trickle)
		if err := sc.Progress(ctx, code, early, early != nil); err != nil {
			fl.log().Debug("SIP provisional not sent", "code", code, "err", err)
		}
	}) {
		fl.busy(l, f, opProgress)
		return false
	}
	return true
}

// forkAnswer: a ringing callee answers; false when its answer is refused.
func (fl *farLeg) forkAnswer(l *leg, f *protocol.Frame) bool {
	c := fl.c
	h := fl.h
	sc := fl.sc
	trickle := !l.ep.Oracle() && !fl.anchored()
	media := fl.media
	var p protocol.CallPayload
	_ = protocol.DecodePayload(f.Payload, &p)
	if !protocol.HasSDP(p.SDP) {
		h.send(l, errorFrame(f, protocol.CodeBadRequest, "an answer needs SDP"), false)
		return false
	}
	local, err := parseSDP(p.SDP)
	if err != nil {
		// The SIP caller keeps ringing: this callee may answer again
		// with a good SDP, another fork may answer, and the ring
		// timeout ends the call as for any unanswered one. Failing the
		// call here would let one broken client end it for every fork.
		h.send(l, errorFrame(f, protocol.CodeNotAcceptableHere, sdpReason(err)), false)
		return false
	}
	headers, err := h.sipHeaders(f.Header.Ext)
	if err != nil {
		// As for a bad SDP: the SIP caller keeps ringing.
		h.send(l, errorFrame(f, protocol.CodeBadRequest, err.Error()), false)
		return false
	}
	c.winner, l.state = l, legAnswered
	fl.logWith("session_id", l.ep.ID(), "subsession_id", l.sub)
	fl.completeCorr = l.startCorr
	fl.setLocalSDP(local)
	fl.adoptTrickle(l)
	if c.timer != nil {
		c.timer.Stop()
	}
	fl.cancelLegs(l)
	fl.must(func() {
		answer, err := fl.webAnswerMedia(media, []byte(p.SDP), false)
		if err != nil {
			// The SIP caller hears 503; the winner a shutdown when
			// the call's end comes back (ended).
			ctx, cancel := opCtx()
			defer cancel()
			_ = sc.Reject(ctx, protocol.CodeServiceUnavailable, mediaReason)
			return
		}
		ctx, cancel := opCtx()
		sc.SetTrickle(trickle)
		err = sc.Answer(ctx, answer, headers...)
		cancel()
		if err != nil {
			fl.rlog().Info("sip answer", "SIP answer failed", "err", err)
			ctx, cancel := opCtx()
			defer cancel()
			_ = sc.Hangup(ctx)
		}
	})
	return true
}

// declineCode is the SIP code of a web error to a start.
func declineCode(f *protocol.Frame) int {
	code := f.Header.ErrorCode
	if code < 300 || code > 699 {
		code = protocol.CodeDecline
	}
	return code
}

// webRejectReoffer: the web side refuses a SIP re-offer.
func (fl *farLeg) webRejectReoffer(l *leg, f *protocol.Frame) {
	if r := fl.sipReoffer; r != nil && f.Control.CorrelationID == r.corr {
		fl.sipReoffer = nil
		_ = r.ro.Reject(declineCode(f), "")
	}
}

// forkDeclines: a ringing callee declines.
func (fl *farLeg) forkDeclines(l *leg, f *protocol.Frame) {
	code := declineCode(f)
	l.state, l.code = legFailed, code
	if code >= 600 {
		fl.cancelLegs(nil)
		fl.reject(code)
		return
	}
	fl.settle()
}
