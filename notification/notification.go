// Package notification is the web side of the message_notification
// package (voicemail, message waiting: docs/protocol.md §7,
// wsc-sdk-1.0-wire.md section 9). A mailbox lives on a SIP notifier, so
// every subscription goes through an [Upstream], which the gateway
// implements with SUBSCRIBE Event: message-summary (RFC 3842) and whose
// NOTIFY bodies it reads with package notification/mwi. Without an
// Upstream a start gets 404 "no voicemail service".
//
// Start with [NewHandler]; the gateway feeds it frames with
// [Handler.HandleFrame] and ends a session's subscriptions with
// [Handler.SessionEnded].
//
// # Frames
//
//   - request/start, target = mailbox: subscribes. The answer, once the
//     Upstream accepted, is response/start 200 with header.expiry; then
//     message/notify frames carry the summary, e.g.
//     {"messages_waiting":"yes","message_account":"sip:bob@example.com",
//     "voice-message":"2/8 (0/2)"} (always with the "(" that wsc.js
//     requires). A start on a subsession that is subscribed already
//     refreshes it: 200 again and the last summary, still one
//     subscription.
//   - message/shutdown from the client ends the subscription, with no
//     answer (wsc.js expects none).
//   - message/shutdown from the server tells the client the subscription
//     ended upstream. wsc.js removes it and then throws (it has no
//     onShutdown); it is still the right frame to send.
//
// wsc.js sends its subscribe without ack_sequence, which the gateway's
// reliability layer tolerates, and never refreshes a subscription
// (quirk 14). So the web side does not expire: a subscription lasts
// until the client ends it, the Upstream ends it or the session ends,
// and the Upstream refreshes its SIP subscription meanwhile. The expiry
// in the answer tells a client that does refresh how often to.
package notification

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/internal/subscription"
	"github.com/jsonrtc/jsonrtc/notification/mwi"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Config is the message_notification section of the gateway
// configuration. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Expiry, in seconds, is asked of the Upstream and reported to the
	// client.
	Expiry int `yaml:"expiry"`
	// MaxSubscriptions bounds the subscriptions of one session.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// PendingTimeout, in seconds, bounds the wait for the Upstream to
	// accept or reject a subscription; then the client gets 408.
	PendingTimeout int `yaml:"pending_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Expiry: 3600, MaxSubscriptions: 10, PendingTimeout: 40}
}

// Validate reports every bad field, naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, msg string) {
		errs = append(errs, fmt.Errorf("message_notification.%s: %s", key, msg))
	}
	if c.Expiry < 0 {
		bad("expiry", "must not be negative")
	}
	if c.MaxSubscriptions < 0 {
		bad("max_subscriptions", "must not be negative")
	}
	if c.PendingTimeout < 0 {
		bad("pending_timeout", "must not be negative")
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Expiry <= 0 {
		c.Expiry = d.Expiry
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.PendingTimeout <= 0 {
		c.PendingTimeout = d.PendingTimeout
	}
	return c
}

// Options configure a Handler.
type Options struct {
	Config
	// Upstream is the SIP notifier. Nil: no voicemail service.
	Upstream Upstream
	Logger   *slog.Logger
	// Local, when set, is told a session's answered subscriptions each
	// time they change (a subscription answered, a summary notified, one
	// ended by the client or the Upstream), with the Handler's lock
	// held: the gateway keeps them in the session's record, so that the
	// node that takes the session over makes them again ([Handler.Adopt]).
	// The end of a session, or its move, is not told.
	Local func(session string, subs []Saved)
}

// Saved is a session's subscription as another node makes it again.
type Saved struct {
	Subsession string `json:"subsession"`
	// Target is the mailbox as the client named it, Ext its start's
	// extension headers: routed again where it is made again.
	Target string         `json:"target"`
	Ext    []protocol.Ext `json:"ext,omitempty"`
	// Last is the summary the client was told last (a payload), if any.
	Last json.RawMessage `json:"last,omitempty"`
}

// Upstream subscribes to mailboxes. The gateway implements it with SIP
// SUBSCRIBE Event: message-summary (RFC 3842), NOTIFY bodies read with
// mwi.Parse, and stop as SUBSCRIBE Expires: 0. Its methods must return
// without waiting on the network.
type Upstream interface {
	// Subscribe starts a subscription and returns at once. Its outcome
	// goes to ev, from any goroutine, even from inside Subscribe: first
	// Accepted or Rejected, once; after Accepted, Notify any number of
	// times and Terminated at most once. The Upstream keeps its SIP
	// subscription refreshed until stop is called or it reports
	// Rejected or Terminated. stop is called without the Handler's lock,
	// at most once, and must be harmless after Rejected or Terminated.
	Subscribe(req Request, ev Events) (stop func())
}

// Request is a subscription the Handler asks the Upstream for.
type Request struct {
	// Subscriber is the web identity.
	Subscriber string
	// Mailbox is the target as the client named it (an
	// application-defined notifier, e.g. sip:voicemail@example.com).
	Mailbox string
	// Expiry is the lifetime to ask for.
	Expiry time.Duration
	// Ext are the start's extension headers, for the gateway's mapping
	// rules.
	Ext []protocol.Ext
	// Route is the routing decision: its trunk and sender presentation
	// (Mailbox is already its target).
	Route routing.Decision
}

// Events receives the outcome of one Upstream subscription. Its methods
// are safe for concurrent use and ignore calls after the subscription
// ended.
type Events interface {
	// Accepted: the subscription is in place (2xx to SUBSCRIBE). ext,
	// here as for Rejected and Notify, are extension headers for the
	// frame the subscriber gets (what the to_web rules made of the SIP
	// response or NOTIFY, docs/routing.md).
	Accepted(ext ...protocol.Ext)
	// Rejected: it failed before or instead of being accepted, with a
	// SIP final response code.
	Rejected(code int, reason string, ext ...protocol.Ext)
	// Notify reports the mailbox's summary. One before Accepted is kept
	// and sent after it.
	Notify(s mwi.Summary, ext ...protocol.Ext)
	// Terminated: the subscription ended upstream.
	Terminated(reason string)
}

// Handler serves the message_notification package.
//
// Lock order: Handler.mu, then an Endpoint's lock inside Send. The
// Upstream's Subscribe and stop are called without mu.
type Handler struct {
	cfg   Config
	up    Upstream
	local func(session string, subs []Saved)
	log   *slog.Logger
	// rlog: lines that frames and SIP messages from outside cause (ratelog).
	rlog *ratelog.Logger

	mu   sync.Mutex
	subs subscription.Table[*sub]
}

type sub struct {
	ep      endpoint.Endpoint
	key     subscription.Key
	target  string
	corr    string // the pending start's correlation
	init    string // and initiator
	pending bool
	ended   bool
	timer   *time.Timer // the pending timeout
	stop    func()
	upEnded bool           // the Upstream ended it: stop is not called
	last    []byte         // the last summary as a payload, or nil
	lastExt []protocol.Ext // the extension headers of last's NOTIFY
	ext     []protocol.Ext // the start's
	// quiet: made again on a node that took the session over (Adopt):
	// the client holds it and has seen last, so the new SUBSCRIBE's 2xx
	// is not told and its first NOTIFY only when it says something new.
	quiet bool
}

func (s *sub) frames() subscription.Frames {
	return subscription.Frames{Package: protocol.PackageMessageNotification, Subsession: s.key.Subsession,
		Target: s.target, Subscriber: s.ep.Identity()}
}

// NewHandler returns a Handler.
func NewHandler(o *Options) *Handler {
	var opts Options // nil: the defaults
	if o != nil {
		opts = *o
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: opts.Config.withDefaults(), up: opts.Upstream, local: opts.Local, log: log, rlog: ratelog.New(log, nil)}
}

// Subscriptions returns the number of live subscriptions, for leak
// checks.
func (h *Handler) Subscriptions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs.Len()
}

// HandleFrame processes a message_notification frame from ep, already
// deduplicated and validated.
func (h *Handler) HandleFrame(ep endpoint.Endpoint, f *protocol.Frame) {
	switch {
	case f.Control.Type == protocol.TypeRequest && f.Header.Action == protocol.ActionStart:
		h.start(ep, f)
	case f.Control.Type == protocol.TypeMessage && f.Header.Action == protocol.ActionShutdown:
		h.mu.Lock()
		var stop func()
		if s, _ := h.subs.Get(subscription.Key{Session: ep.ID(), Subsession: f.Control.SubsessionID}); s != nil {
			stop = h.endLocked(s)
			h.exportLocked(ep.ID())
		}
		h.mu.Unlock()
		if stop != nil {
			stop()
		}
	case f.Control.Type == protocol.TypeRequest:
		ep.Send(reply(f, protocol.CodeMethodNotAllowed, ""), false)
	}
}

// SessionEnded ends ep's subscriptions, upstream too.
func (h *Handler) SessionEnded(ep endpoint.Endpoint) {
	h.mu.Lock()
	var stops []func()
	for _, s := range h.subs.Session(ep.ID()) {
		if stop := h.endLocked(s); stop != nil {
			stops = append(stops, stop)
		}
	}
	h.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

func (h *Handler) start(ep endpoint.Endpoint, f *protocol.Frame) {
	id := ep.Identity()
	if i := f.Header.Initiator; i != "" && i != id && i != "sip:"+id && i != "sips:"+id {
		ep.Send(reply(f, protocol.CodeForbidden, "initiator is not you"), false)
		return
	}
	if f.Header.Target == "" {
		ep.Send(reply(f, protocol.CodeBadRequest, "start needs a target"), false)
		return
	}
	d := endpoint.Route(ep, routing.Subscribe, f.Header.Target, f.Header.Ext)
	switch d.Action {
	case routing.ActionReject:
		ep.Send(reply(f, d.Code, d.Reason), false)
		return
	case routing.ActionWeb:
		// Mailboxes live on the SIP side only.
		ep.Send(reply(f, protocol.CodeNotFound, "no voicemail service on the web side"), false)
		return
	}
	key := subscription.Key{Session: ep.ID(), Subsession: f.Control.SubsessionID}
	h.mu.Lock()
	if s, _ := h.subs.Get(key); s != nil {
		switch {
		case s.target != f.Header.Target:
			ep.Send(reply(f, protocol.CodeBadRequest, "this subsession subscribes to "+s.target), false)
		case s.pending:
			ep.Send(reply(f, protocol.CodeRequestPending, "the subscription is not answered yet"), false)
		default:
			ep.Send(h.accepted(s, protocol.ClientCorrelation(f), f.Header.Initiator), false)
			if s.last != nil {
				h.notifyLocked(s)
			}
		}
		h.mu.Unlock()
		return
	}
	if h.up == nil {
		h.mu.Unlock()
		ep.Send(reply(f, protocol.CodeNotFound, "no voicemail service"), false)
		return
	}
	if h.subs.SessionLen(ep.ID()) >= h.cfg.MaxSubscriptions {
		h.mu.Unlock()
		ep.Send(reply(f, protocol.CodeServiceUnavailable, "too many subscriptions"), false)
		return
	}
	s := &sub{ep: ep, key: key, target: f.Header.Target, corr: protocol.ClientCorrelation(f), init: f.Header.Initiator, pending: true, ext: f.Header.Ext}
	if !h.subs.Add(key, s, ep) {
		h.mu.Unlock()
		ep.Send(reply(f, subscription.LimitReachedCode, subscription.LimitReachedReason), false)
		return
	}
	s.timer = time.AfterFunc(time.Duration(h.cfg.PendingTimeout)*time.Second, func() { h.timeout(s) })
	h.mu.Unlock()
	h.subscribe(s, d)
}

// subscribe makes s's Upstream subscription as routed by d.
func (h *Handler) subscribe(s *sub, d routing.Decision) {
	stop := h.up.Subscribe(Request{Subscriber: s.ep.Identity(), Mailbox: d.Target, Expiry: time.Duration(h.cfg.Expiry) * time.Second,
		Ext: s.ext, Route: d}, events{h, s})
	h.mu.Lock()
	ended := s.ended
	if !ended {
		s.stop = stop
	}
	callStop, again := ended && !s.upEnded, s.quiet
	h.mu.Unlock()
	if callStop && stop != nil {
		stop()
	}
	h.log.Debug("message summary subscription", "session_id", s.ep.ID(), "subsession_id", s.key.Subsession, "mailbox", s.target, "again", again)
}

func (h *Handler) timeout(s *sub) {
	h.mu.Lock()
	if s.ended || !s.pending {
		h.mu.Unlock()
		return
	}
	s.ep.Send(h.startError(s, protocol.CodeRequestTimeout, "the voicemail service did not answer"), false)
	stop := h.endLocked(s)
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// endLocked forgets s and returns the upstream stop to call, if any,
// once mu is released.
func (h *Handler) endLocked(s *sub) func() {
	if s.ended {
		return nil
	}
	s.ended = true
	if s.timer != nil {
		s.timer.Stop()
	}
	h.subs.Remove(s.key, s)
	return s.stop
}

func (h *Handler) accepted(s *sub, corr, initiator string) *protocol.Frame {
	return s.frames().Accepted(corr, initiator, h.cfg.Expiry)
}

func (h *Handler) startError(s *sub, code int, reason string) *protocol.Frame {
	return s.frames().StartError(s.corr, s.init, code, reason)
}

// notifyLocked sends the last summary.
func (h *Handler) notifyLocked(s *sub) {
	if _, err := s.ep.Send(s.frames().Notify(s.last, s.lastExt...), true); err != nil {
		h.log.Debug("notify to ended session", "session_id", s.ep.ID(), "err", err)
	}
}

func reply(f *protocol.Frame, code int, reason string) *protocol.Frame {
	return subscription.Reply(protocol.PackageMessageNotification, f, protocol.TypeError, code, reason)
}

// events delivers one upstream subscription's outcome.
type events struct {
	h *Handler
	s *sub
}

func (e events) Accepted(ext ...protocol.Ext) {
	h, s := e.h, e.s
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.ended || !s.pending {
		return
	}
	s.pending = false
	s.timer.Stop()
	h.exportLocked(s.key.Session)
	s.ep.Send(s.frames().Accepted(s.corr, s.init, h.cfg.Expiry, ext...), false)
	if s.last != nil {
		h.notifyLocked(s)
	}
}

func (e events) Rejected(code int, reason string, ext ...protocol.Ext) { e.fail(code, reason, ext...) }

func (e events) Terminated(reason string) { e.fail(protocol.CodeTemporarilyUnavail, reason) }

// fail ends the subscription from the upstream side: an error to a
// pending start, else a server shutdown.
func (e events) fail(code int, reason string, ext ...protocol.Ext) {
	h, s := e.h, e.s
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.ended {
		return
	}
	if s.pending {
		s.ep.Send(s.frames().Rejected(s.corr, s.init, code, reason, ext...), false)
	} else {
		s.ep.Send(s.frames().Shutdown("subscription terminated"), true)
	}
	s.stop, s.upEnded = nil, true
	h.endLocked(s)
	h.exportLocked(s.key.Session)
}

func (e events) Notify(sum mwi.Summary, ext ...protocol.Ext) {
	h, s := e.h, e.s
	p := sum.Payload()
	if p == nil {
		h.rlog.Warn("upstream summary", "invalid message summary from upstream", "mailbox", s.target)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.ended {
		return
	}
	quiet := s.quiet && bytes.Equal(s.last, p)
	s.quiet = false
	s.last, s.lastExt = p, ext
	if s.pending || quiet {
		// A subscription made again whose first NOTIFY says what the
		// client saw last: nothing to tell it.
		return
	}
	// The record carries the summary last told, so that a node taking
	// the session over tells only a change. It goes first: the record is
	// written ahead of the frames, and one written between the notify
	// and the export (a kill right after) had the notify without its
	// summary, and the process restarted on it told the summary again.
	h.exportLocked(s.key.Session)
	h.notifyLocked(s)
}
