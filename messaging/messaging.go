// Package messaging relays instant messages (the messaging package,
// PROTOCOL.md section 5) between web sessions: a send reaches every live
// session of the target, the first answer goes back to the sender as the
// delivery report, and a target with no session gets 480 (404 when the
// identity is unknown).
package messaging

import (
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/call"
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
	Logger     *slog.Logger
}

// Handler relays messaging frames.
type Handler struct {
	opts Options
	dir  call.Directory
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
	from     call.Endpoint
	corr     string // the sender's id for it
	sub      string
	target   string
	copies   int
	answered bool
	timer    *time.Timer
}

type delivery struct {
	msg *message
	to  call.Endpoint
}

// NewHandler returns a Handler that finds targets in dir.
func NewHandler(dir call.Directory, opts Options) *Handler {
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
			SubsessionID: f.Control.SubsessionID, CorrelationID: call.ClientCorrelation(f)},
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
func (h *Handler) HandleFrame(ep call.Endpoint, f *protocol.Frame) {
	switch f.Control.Type {
	case protocol.TypeRequest:
		h.send(ep, f)
	case protocol.TypeResponse, protocol.TypeError:
		h.answer(ep, f)
	}
}

func (h *Handler) send(ep call.Endpoint, f *protocol.Frame) {
	var p protocol.MessagePayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, err.(*protocol.Error).Reason), false)
		return
	}
	var to []call.Endpoint
	for _, e := range h.dir.Sessions(f.Header.Target) {
		if e.ID() != ep.ID() {
			to = append(to, e)
		}
	}
	if len(to) == 0 {
		code := protocol.CodeNotFound
		if h.dir.Known(f.Header.Target) {
			code = protocol.CodeTemporarilyUnavail
		}
		ep.Send(reply(f, protocol.TypeError, code, ""), false)
		return
	}
	m := &message{from: ep, corr: call.ClientCorrelation(f), sub: f.Control.SubsessionID, target: f.Header.Target}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending+len(to) > h.opts.MaxPending {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeServiceUnavailable, "too many messages in flight"), false)
		return
	}
	for _, e := range to {
		out := &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Initiator: ep.Identity(), Target: f.Header.Target,
				Ext: f.Header.Ext},
			Payload: f.Payload,
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
		ep.Send(reply(f, protocol.TypeError, protocol.CodeTemporarilyUnavail, ""), false)
		return
	}
	m.timer = time.AfterFunc(h.opts.Timeout, func() { h.expire(m) })
}

func (h *Handler) answer(ep call.Endpoint, f *protocol.Frame) {
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
func (h *Handler) SessionEnded(ep call.Endpoint) {
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
