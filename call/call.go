package call

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Options configure a Handler.
type Options struct {
	// RingTimeout ends an unanswered call with 480. Default 60 s.
	RingTimeout time.Duration
	// SubsessionPrefix begins the subsession ids the handler gives the
	// callees' legs; default "s". The nodes of a cluster each have their
	// own, so that a session in calls hosted on two nodes never gets the
	// same id from both.
	SubsessionPrefix string
	// Replicate, when set, hears each change of a call between web
	// sessions, from its start (its ringing forks) to its answer and
	// after, that the call needs to go on elsewhere (restore.go),
	// and its end (ended). It is called with the call's lock held, in
	// the order of the changes, and must not block.
	Replicate func(sn Snapshot, ended bool)
	// WriteAhead, when set, hears a call between web sessions answered
	// before the answer is relayed to the caller, and its end (ended)
	// before a leg's hang-up is relayed to the other, and returns once
	// that is stored (restore.go writeAhead): a host that dies after the
	// relay leaves the call in its record as the other side heard it,
	// answered or gone. It is called without the call's lock; its error
	// lets the frame go on, Replicate's write following.
	WriteAhead func(sn Snapshot, ended bool) error
	// ReplicateSIP, when set, hears each change of a confirmed call with
	// a SIP leg (its dialog's state, whose App holds sn) and its end
	// (ended; st is then empty), in order, from the call's own goroutine
	// (siprestore.go); it must not block for long. WriteAheadSIP, called
	// before each of the call's in-dialog requests leaves with the state
	// it makes, returns once that is stored: the request waits for it,
	// and is refused (sipgw.ErrNotRecorded) when it returns an error.
	ReplicateSIP  func(sn SIPSnapshot, st sipgw.DialogState, ended bool)
	WriteAheadSIP func(sn SIPSnapshot, st sipgw.DialogState) error
	Logger        *slog.Logger
}

// Handler relays calls between web sessions.
//
// Lock order: Call.mu, then Handler.mu; an Endpoint's own lock is taken
// inside Send, after both. Frames to a session are sent under the call's
// lock so that each side sees one call's frames in the order of events.
type Handler struct {
	opts Options
	dir  Directory
	log  *slog.Logger
	// rlog: lines that frames and SIP messages from outside cause (ratelog).
	rlog *ratelog.Logger
	next atomic.Uint64 // server subsession ids
	// refused counts, by operation, web requests on SIP calls refused
	// because the call's SIP operation queue was full (metrics.go).
	refused [numQueuedOps]atomic.Uint64
	// mediaFailed counts rtpengine commands that failed (media.go).
	mediaFailed atomic.Uint64
	sdesRetries atomic.Uint64 // INVITEs offered again in SDES-SRTP (media.go)
	// quality: what rtpengine received from each leg of anchored calls
	// (metrics.go).
	quality mediaQuality

	mu    sync.Mutex
	legs  map[legKey]*leg
	calls map[*Call]struct{}
	// grants are the calls attended transfers may replace, by the
	// Call-ID of the dialog that names them; dialogs the SIP calls, by
	// Call-ID (attended.go).
	grants  map[string]*grant
	dialogs map[string][]*farLeg
	idle    chan struct{} // closed when a call is forgotten (WaitIdle)

	far *sipSide // nil without SIP (sip.go)
}

type legKey struct{ session, subsession string }

// NewHandler returns a Handler that finds callees in dir.
func NewHandler(dir Directory, o *Options) *Handler {
	var opts Options // nil: the defaults
	if o != nil {
		opts = *o
	}
	if opts.RingTimeout <= 0 {
		opts.RingTimeout = 60 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SubsessionPrefix == "" {
		opts.SubsessionPrefix = "s"
	}
	return &Handler{opts: opts, dir: dir, log: opts.Logger, rlog: ratelog.New(opts.Logger, nil), quality: newMediaQuality(), legs: map[legKey]*leg{}, calls: map[*Call]struct{}{},
		grants: map[string]*grant{}, dialogs: map[string][]*farLeg{}}
}

// Call is one call: a caller leg and one callee leg per ringing session.
type Call struct {
	mu      sync.Mutex
	caller  *leg
	callees []*leg
	winner  *leg
	target  string // the callee as the caller named it
	ended   bool
	timer   *time.Timer
	// ringUntil is when the ring timer ends the call unanswered.
	ringUntil time.Time
	far       farSide // the relay (relay.go) or the SIP leg (sip.go)
	// grant names this call to attended transfers (attended.go): one per
	// call, however many transfers name it.
	grant *grant
	// replicated is the snapshot Options.Replicate heard last
	// (restore.go).
	replicated *Snapshot
	// origin names the client frame whose processing is under way in a
	// call between web sessions: what the call sends other sessions
	// meanwhile relays it (endpoint.Origin), parts numbering the relays
	// of it to each session. Zero outside a frame's processing.
	origin endpoint.Origin
	parts  map[string]uint64
	// answer: the winner's answer of a call between web sessions
	// (Snapshot.Answer).
	answer *AnswerSnapshot
	// adopting: the call's adoption (RestoreRingingSIP) is under way,
	// what reaches its legs waiting, in order.
	adopting bool
	waiting  []adoptWait
}

// relaying makes o the origin of what c sends other sessions until the
// returned func is called. c.mu is held throughout.
func (c *Call) relaying(o endpoint.Origin) (done func()) {
	c.origin = o
	return func() { c.origin, c.parts = endpoint.Origin{}, nil }
}

// originTo returns the origin of the next frame c sends to ep: none for
// a frame to the sender itself (an answer to its own frame, which its
// resend makes again) or outside a frame's processing (a ring timeout,
// a session's end). c.mu is held.
func (c *Call) originTo(ep Endpoint) endpoint.Origin {
	o := c.origin
	if o.Session == "" || ep.ID() == o.Session {
		return endpoint.Origin{}
	}
	if c.parts == nil {
		c.parts = map[string]uint64{}
	}
	o.Part = c.parts[ep.ID()]
	c.parts[ep.ID()]++
	return o
}

// farSide is the far side of a call as its web legs see it: the other
// web sessions (relay) or a SIP leg (*farLeg). It is chosen when the call
// starts and handles every web event of the call, with c.mu held and the
// call not ended.
type farSide interface {
	// frame handles a frame from the web leg l.
	frame(l *leg, f *protocol.Frame)
	// sessionEnded handles the end of l's session.
	sessionEnded(l *leg)
}

type legState uint8

const (
	legRinging legState = iota
	legAnswered
	legFailed
)

type leg struct {
	call  *Call
	ep    Endpoint
	sub   string
	state legState
	code  int // failure code of a callee leg
	// startCorr is the correlation of the initial start on this side.
	startCorr string
	// answerCorr is the correlation of the offer this side last answered:
	// the peer's complete is relayed to it with this id.
	answerCorr string
	// reoffer is a re-offer this side sent that the other side has not
	// answered: its correlation here and on the other side.
	reoffer *pending
	// transfer is an outstanding transfer request from this side.
	transfer *pending
	// trickle buffers a forked callee's candidates until it wins.
	trickle []json.RawMessage
	// held: this leg holds one of its endpoint's call quota.
	held bool
	// declared: the other page's requests of declared actions this leg
	// has not answered, by their correlation here (template.go).
	declared map[string]*relayedRequest
}

type pending struct{ here, there string }

const maxBufferedTrickle = 64

// Active returns the number of calls in progress, for leak checks.
func (h *Handler) Active() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

func (h *Handler) lookup(ep Endpoint, sub string) *leg {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.legs[legKey{ep.ID(), sub}]
}

// HandleFrame processes a call-package frame from ep, already deduplicated
// and validated.
func (h *Handler) HandleFrame(ep Endpoint, f *protocol.Frame) {
	l := h.lookup(ep, f.Control.SubsessionID)
	if l == nil {
		if f.Control.Type == protocol.TypeRequest && f.Header.Action == protocol.ActionStart {
			h.startCall(ep, f)
			return
		}
		if f.Control.Type == protocol.TypeRequest {
			ep.Send(errorFrame(f, protocol.CodeNoSuchCall, "no such call"), false)
		}
		// Responses, errors and messages for a call that is gone are
		// dropped: the SDK sends shutdown without expecting an answer,
		// and answers to an ended call have nobody to go to.
		return
	}
	if f.Header.Replaces != "" && f.Control.Type == protocol.TypeRequest && f.Header.Action == protocol.ActionTransfer {
		// An attended transfer names its consult call by the sender's
		// subsession: resolved here, outside the call's lock, to a token
		// only the gateway makes (attended.go).
		var ok bool
		if f, ok = h.resolveReplaces(ep, l, f); !ok {
			return
		}
	}
	h.writeAhead(l, f)
	c := l.call
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if c.adopting {
		h.wait(l, f)
		return
	}
	c.far.frame(l, f)
}

// newSub returns a new server subsession id.
func (h *Handler) newSub() string {
	return h.opts.SubsessionPrefix + strconv.FormatUint(h.next.Add(1), 10)
}

// frameTo builds a frame on l's side of the call.
func (h *Handler) frameTo(l *leg, typ protocol.Type, action protocol.Action, corr string) *protocol.Frame {
	c := l.call
	init, target := c.caller.ep.Identity(), c.target
	if l != c.caller {
		target = l.ep.Identity()
	}
	return &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageCall, SubsessionID: l.sub, CorrelationID: corr},
		Header:  protocol.Header{Action: action, Initiator: init, Target: target},
	}
}

// send sends f to l's session, as a relay of the frame whose processing
// is under way in l's call (Call.relaying), taken once however often a
// resend of it makes it again. l.call.mu is held.
func (h *Handler) send(l *leg, f *protocol.Frame, selfCorrelate bool) uint64 {
	seq, err := endpoint.Relay(l.ep, f, selfCorrelate, l.call.originTo(l.ep))
	if err != nil {
		h.log.Debug("send to ended session", "session_id", l.ep.ID(), "err", err)
	}
	return seq
}

// sendRequest sends f, a request relayed to l's session (self-
// correlated), and returns the correlation its answer will carry; an
// error when l's session did not take it (its node dead and not yet
// known so, or the session gone), for the sender to hear at once: a
// request pending on a relay nobody took was answered by nobody, and
// every later one of the call was refused as glare. l.call.mu is held.
func (h *Handler) sendRequest(l *leg, f *protocol.Frame) (string, error) {
	seq, err := endpoint.Relay(l.ep, f, true, l.call.originTo(l.ep))
	if err != nil {
		h.log.Debug("request to a session not taken", "session_id", l.ep.ID(), "err", err)
		return "", err
	}
	return "s" + strconv.FormatUint(seq, 10), nil
}

// peerUnreachable is the reason of a request of a call its peer's session
// did not take.
const peerUnreachable = "the call's peer is unreachable"

func (h *Handler) failCaller(c *Call, code int, reason string) {
	if reason == "" {
		reason = protocol.Reason(code)
	}
	out := h.frameTo(c.caller, protocol.TypeError, protocol.ActionStart, c.caller.startCorr)
	out.Header.ErrorCode, out.Header.Reason = code, reason
	h.send(c.caller, out, false)
}

// SessionEnded shuts down every call ep takes part in, toward the peers.
func (h *Handler) SessionEnded(ep Endpoint) {
	for _, l := range h.legsOf(ep) {
		h.legSessionEnded(l)
	}
}

// SessionStopped is SessionEnded for a session whose node stops and
// keeps its record for the next run (a shutdown with a store): its calls
// with web sessions only are left as their records hold them, for the
// node that goes on with them (this one started again, or a survivor
// that adopts them) and the session's client, which resumes; no peer
// hears of it and nothing is written. Ended, they ended for everyone on
// an operator's restart (SIGTERM), though a kill kept them. Its calls
// with a SIP leg end as SessionEnded ends them: their dialogs end with
// the SIP side (docs/cluster.md, "SIP dialogs").
func (h *Handler) SessionStopped(ep Endpoint) {
	for _, l := range h.legsOf(ep) {
		c := l.call
		c.mu.Lock()
		_, web := c.far.(relay)
		c.mu.Unlock()
		if !web {
			h.legSessionEnded(l)
		}
	}
}

// legSessionEnded ends l, whose session ended.
func (h *Handler) legSessionEnded(l *leg) {
	// The end of a call between web sessions by its caller's or
	// answered callee's session is stored before the peers hear it,
	// as a hang-up is (writeAhead): relayed first, a host dying
	// before the end's write left the call in its record, adopted
	// as alive by the node the peer resumed on.
	h.endAhead(l)
	c := l.call
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.adopting:
		h.wait(l, nil)
	case !c.ended:
		c.far.sessionEnded(l)
	}
}

// legsOf returns ep's legs.
func (h *Handler) legsOf(ep Endpoint) []*leg {
	h.mu.Lock()
	defer h.mu.Unlock()
	var mine []*leg
	for k, l := range h.legs {
		if k.session == ep.ID() {
			mine = append(mine, l)
		}
	}
	return mine
}

// WaitIdle returns once no call is in progress (SIP legs included), or
// with ctx's error.
func (h *Handler) WaitIdle(ctx context.Context) error {
	for {
		h.mu.Lock()
		n := len(h.calls)
		if h.idle == nil {
			h.idle = make(chan struct{})
		}
		ch := h.idle
		h.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// signalIdleLocked wakes WaitIdle after a call was forgotten; h.mu held.
func (h *Handler) signalIdleLocked() {
	if h.idle != nil {
		close(h.idle)
		h.idle = nil
	}
}
