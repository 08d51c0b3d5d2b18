// Package messaging relays instant messages (the messaging package,
// docs/protocol.md §8) between web sessions: a send reaches every live
// session of the target, the first answer goes back to the sender as the
// delivery report, and a target with no session gets 480 (404 when the
// identity is unknown).
//
// Targets that are no web identity go to an [Upstream] when there is one
// (the gateway's is SIP MESSAGE, RFC 3428), whose final response code is
// the delivery report. Messages from the upstream come in through
// [Handler.Deliver] and reach every live session of their web target as
// request/send; the first answer goes back upstream.
package messaging

import (
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Options configure a Handler.
type Options struct {
	// Timeout bounds how long a sender waits for a delivery report. It
	// should outlast the resume timeout, since a message to a session
	// that lost its socket is delivered after the resume. Default 90 s.
	Timeout time.Duration
	// MaxPending bounds the messages awaiting a report, over all
	// sessions; past it a send gets 503. Default 100000.
	MaxPending int
	// Upstream carries messages to targets that are not web users. Nil:
	// none, such targets get 404.
	Upstream Upstream
	Logger   *slog.Logger
}

// Upstream carries messages to targets that are not web users.
type Upstream interface {
	// Routes reports whether the upstream serves target. It is asked only
	// about targets that are no known web identity.
	Routes(target string) bool
	// Send sends m and returns at once; report gets the final code
	// (2xx: delivered) and reason, once, from any goroutine, never from
	// inside Send. An error means m cannot be sent at all (the sender
	// gets 400 with its text).
	Send(m Outgoing, report func(code int, reason string)) error
}

// Outgoing is a message for the Upstream.
type Outgoing struct {
	// From is the sender's web identity; To the target as written.
	From, To string
	Payload  protocol.MessagePayload
	Ext      []protocol.Ext
}

// Handler relays messaging frames.
type Handler struct {
	opts Options
	dir  endpoint.Directory
	log  *slog.Logger

	// mu is held across the relay so that a record exists before its
	// answer can arrive. Endpoint locks are taken inside it.
	mu      sync.Mutex
	byKey   map[key]*delivery
	pending int
}

type key struct{ session, corr string }

// message is one send from a web user; delivery one copy of it.
type message struct {
	from     endpoint.Endpoint // nil for a message from the Upstream
	answerFn func(code int, reason string)
	corr     string // the sender's id for it
	sub      string
	target   string
	copies   int
	answered bool
	timer    *time.Timer
}

type delivery struct {
	msg *message
	to  endpoint.Endpoint
}

// NewHandler returns a Handler that finds targets in dir.
func NewHandler(dir endpoint.Directory, opts Options) *Handler {
	if opts.Timeout <= 0 {
		opts.Timeout = 90 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{opts: opts, dir: dir, log: opts.Logger, byKey: map[key]*delivery{}}
}

// Pending returns the deliveries awaiting an answer, for leak checks.
func (h *Handler) Pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byKey)
}

func reply(f *protocol.Frame, typ protocol.Type, code int, reason string) *protocol.Frame {
	out := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageMessaging,
			SubsessionID: f.Control.SubsessionID, CorrelationID: protocol.ClientCorrelation(f)},
		Header: protocol.Header{Action: protocol.ActionSend, Initiator: f.Header.Initiator, Target: f.Header.Target},
	}
	if typ == protocol.TypeError {
		out.Header.ErrorCode = code
	} else {
		out.Header.ResponseCode = code
	}
	if reason == "" {
		reason = protocol.Reason(code)
	}
	out.Header.Reason = reason
	return out
}

// HandleFrame processes a messaging frame from ep.
func (h *Handler) HandleFrame(ep endpoint.Endpoint, f *protocol.Frame) {
	switch f.Control.Type {
	case protocol.TypeRequest:
		h.send(ep, f)
	case protocol.TypeResponse, protocol.TypeError:
		h.answer(ep, f)
	}
}

func (h *Handler) send(ep endpoint.Endpoint, f *protocol.Frame) {
	var p protocol.MessagePayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, protocol.ReasonOf(err)), false)
		return
	}
	id := webID(f.Header.Target)
	var to []endpoint.Endpoint
	for _, e := range h.dir.Sessions(id) {
		if e.ID() != ep.ID() {
			to = append(to, e)
		}
	}
	if len(to) == 0 {
		known := h.dir.Known(id)
		if !known && h.opts.Upstream != nil && h.opts.Upstream.Routes(f.Header.Target) {
			h.sendUp(ep, f, p)
			return
		}
		code := protocol.CodeNotFound
		if known {
			code = protocol.CodeTemporarilyUnavail
		}
		ep.Send(reply(f, protocol.TypeError, code, ""), false)
		return
	}
	m := &message{from: ep, corr: protocol.ClientCorrelation(f), sub: f.Control.SubsessionID, target: f.Header.Target}
	h.relay(m, to, ep.Identity(), f.Header.Target, f.Header.Ext, f.Payload)
}

// relay sends m to the sessions to and arms its timeout.
func (h *Handler) relay(m *message, to []endpoint.Endpoint, from, target string, ext []protocol.Ext, payload []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending+len(to) > h.opts.MaxPending {
		m.answered = true
		h.report(m, protocol.TypeError, protocol.CodeServiceUnavailable, "too many messages in flight")
		return
	}
	for _, e := range to {
		out := &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Initiator: from, Target: target,
				Ext: ext},
			Payload: payload,
		}
		seq, err := e.Send(out, true)
		if err != nil {
			continue
		}
		h.byKey[key{e.ID(), "s" + strconv.FormatUint(seq, 10)}] = &delivery{msg: m, to: e}
		m.copies++
		h.pending++
	}
	if m.copies == 0 {
		m.answered = true
		h.report(m, protocol.TypeError, protocol.CodeTemporarilyUnavail, "")
		return
	}
	m.timer = time.AfterFunc(h.opts.Timeout, func() { h.expire(m) })
}

// sendUp hands a send to the Upstream; its final code is the delivery
// report.
func (h *Handler) sendUp(ep endpoint.Endpoint, f *protocol.Frame, p protocol.MessagePayload) {
	h.mu.Lock()
	if h.pending >= h.opts.MaxPending {
		h.mu.Unlock()
		ep.Send(reply(f, protocol.TypeError, protocol.CodeServiceUnavailable, "too many messages in flight"), false)
		return
	}
	h.pending++
	h.mu.Unlock()
	m := &message{from: ep, corr: protocol.ClientCorrelation(f), sub: f.Control.SubsessionID, target: f.Header.Target}
	err := h.opts.Upstream.Send(Outgoing{From: ep.Identity(), To: f.Header.Target, Payload: p, Ext: f.Header.Ext},
		func(code int, reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.pending--
			if m.answered {
				return
			}
			m.answered = true
			switch {
			case code >= 200 && code < 300:
				h.report(m, protocol.TypeResponse, code, reason)
			case code == protocol.CodeServerError || code < 300 || code > 699:
				// 500 would end the sender's whole session (docs/protocol.md
				// §9.1).
				h.report(m, protocol.TypeError, protocol.CodeServiceUnavailable, reason)
			default:
				h.report(m, protocol.TypeError, code, reason)
			}
		})
	if err != nil {
		h.mu.Lock()
		h.pending--
		m.answered = true
		h.mu.Unlock()
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, err.Error()), false)
	}
}

// Deliver hands a message from the Upstream to every live session of
// the web identity to, as request/send with initiator from. answer gets
// the first session's answer once, from any goroutine: its code (a 2xx
// for a response) and reason; 480 when to has no live session, 404 when
// it is unknown, 408 after the report timeout, 503 when too many
// messages are in flight. It must not block. Deliver returns at once.
func (h *Handler) Deliver(from, to string, p protocol.MessagePayload, answer func(code int, reason string)) {
	id := webID(to)
	sessions := h.dir.Sessions(id)
	if len(sessions) == 0 {
		if h.dir.Known(id) {
			answer(protocol.CodeTemporarilyUnavail, protocol.Reason(protocol.CodeTemporarilyUnavail))
		} else {
			answer(protocol.CodeNotFound, protocol.Reason(protocol.CodeNotFound))
		}
		return
	}
	m := &message{answerFn: answer, target: id}
	h.relay(m, sessions, from, id, nil, protocol.EncodePayload(p))
}

// webID is the web identity a target names: user@domain for
// sip:user@domain.
func webID(target string) string {
	scheme, rest, ok := strings.Cut(target, ":")
	if ok && !strings.Contains(scheme, "@") && (strings.EqualFold(scheme, "sip") || strings.EqualFold(scheme, "sips")) {
		return rest
	}
	return target
}

func (h *Handler) answer(ep endpoint.Endpoint, f *protocol.Frame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := key{ep.ID(), f.Control.CorrelationID}
	d := h.byKey[k]
	if d == nil {
		return
	}
	delete(h.byKey, k)
	h.pending--
	m := d.msg
	m.copies--
	if m.answered {
		return
	}
	m.answered = true
	m.timer.Stop()
	code := f.Header.ResponseCode
	typ := protocol.TypeResponse
	if f.Control.Type == protocol.TypeError {
		typ, code = protocol.TypeError, f.Header.ErrorCode
	} else if code == 0 {
		code = protocol.CodeOK
	}
	h.report(m, typ, code, f.Header.Reason)
}

func (h *Handler) report(m *message, typ protocol.Type, code int, reason string) {
	if reason == "" {
		reason = protocol.Reason(code)
	}
	if m.answerFn != nil {
		m.answerFn(code, reason)
		return
	}
	out := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageMessaging, SubsessionID: m.sub, CorrelationID: m.corr},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: m.from.Identity(), Target: m.target, Reason: reason},
	}
	if typ == protocol.TypeError {
		out.Header.ErrorCode = code
	} else {
		out.Header.ResponseCode = code
	}
	m.from.Send(out, false)
}

func (h *Handler) expire(m *message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.answered {
		return
	}
	m.answered = true
	h.report(m, protocol.TypeError, protocol.CodeRequestTimeout, "no delivery report")
	for k, d := range h.byKey {
		if d.msg == m {
			delete(h.byKey, k)
			h.pending--
		}
	}
}

// SessionEnded drops the deliveries to ep; a message none of whose copies
// can now be answered gets 480.
func (h *Handler) SessionEnded(ep endpoint.Endpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, d := range h.byKey {
		if k.session != ep.ID() {
			continue
		}
		delete(h.byKey, k)
		h.pending--
		m := d.msg
		m.copies--
		if m.copies == 0 && !m.answered {
			m.answered = true
			m.timer.Stop()
			h.report(m, protocol.TypeError, protocol.CodeTemporarilyUnavail, "")
		}
	}
}
