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
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
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
	// gets 400 with its text). ext are extension headers for the report
	// frame (the to_web rules' of the SIP response).
	Send(m Outgoing, report func(code int, reason string, ext []protocol.Ext)) error
}

// Outgoing is a message for the Upstream.
type Outgoing struct {
	// From is the sender's web identity; To the target as routing left
	// it (as written, or rewritten).
	From, To string
	Payload  protocol.MessagePayload
	Ext      []protocol.Ext
	// Route is the routing decision: its trunk and sender presentation.
	Route routing.Decision
}

// Handler relays messaging frames.
//
// No lock is held while a frame is sent to a session: a relay notes
// under its target's shard lock that it is sending, sends, then records
// the delivery under the sequence Send returned. An answer that overtakes
// its record (the target answered before Send returned to the relay) is
// kept in the target's inbox until the relay records it.
//
// Every copy of a message stays recorded until its session answers or
// ends, or the report timeout: the first answer is the report, the later
// ones find their record and change nothing.
//
// Lock order: a shard's mu, then a message's mu. Never two shards at once.
type Handler struct {
	opts Options
	dir  endpoint.Directory
	log  *slog.Logger

	seed   maphash.Seed
	shards [numShards]shard
	// pending counts deliveries awaiting an answer (reserved before their
	// send) and sends to the Upstream awaiting its report; MaxPending
	// bounds it.
	pending atomic.Int64
}

// numShards spreads the deliveries over locks by target session, so
// that relays to different sessions do not wait for each other.
const numShards = 64

type shard struct {
	mu sync.Mutex
	to map[string]*inbox // by target session id
}

// inbox is what a shard holds for one target session. It exists while
// the session has deliveries or a relay is sending to it.
type inbox struct {
	deliveries map[string]*delivery // by correlation id, "s<sequence>"
	// sending counts relays between their Send to the session and the
	// record of its delivery.
	sending int
	// early holds answers that came while a relay was sending, with no
	// delivery yet under their correlation id: at most one per relay
	// sending, so a peer answering at random cannot grow it (it can only
	// crowd out its own answers, whose messages then time out).
	early []sessionAnswer
	// ended is set when the session ended while a relay was sending: what
	// it sent can no longer be answered.
	ended bool
}

// sessionAnswer is what a session answered to a delivery.
type sessionAnswer struct {
	corr   string
	typ    protocol.Type
	code   int
	reason string
	ext    []protocol.Ext
}

type key struct{ session, corr string }

// message is one send from a web user or from the Upstream; delivery one
// copy of it.
type message struct {
	from     endpoint.Endpoint // nil for a message from the Upstream
	answerFn func(code int, reason string, ext []protocol.Ext)
	corr     string // the sender's id for it
	sub      string
	target   string

	mu       sync.Mutex
	answered bool // it has its report
	expired  bool // the report timeout fired: its deliveries are dropped
	// copies counts the copies that may still answer, plus one while the
	// relay is still sending: the last one gone, unanswered, is a 480.
	copies int
	keys   []key // where its deliveries are recorded
	timer  *time.Timer
}

type delivery struct {
	msg *message
}

// NewHandler returns a Handler that finds targets in dir.
func NewHandler(dir endpoint.Directory, o *Options) *Handler {
	var opts Options // nil: the defaults
	if o != nil {
		opts = *o
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 90 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, dir: dir, log: opts.Logger, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].to = map[string]*inbox{}
	}
	return h
}

// Pending returns the messages awaiting an answer, for leak checks:
// deliveries to sessions and sends to the Upstream.
func (h *Handler) Pending() int {
	return int(h.pending.Load())
}

// reserve takes n places in the MaxPending bound, or none.
func (h *Handler) reserve(n int) bool {
	for {
		p := h.pending.Load()
		if p+int64(n) > int64(h.opts.MaxPending) {
			return false
		}
		if h.pending.CompareAndSwap(p, p+int64(n)) {
			return true
		}
	}
}

func (h *Handler) shard(session string) *shard {
	return &h.shards[maphash.String(h.seed, session)%numShards]
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
	// The payload goes out as it came: it only has to be one that decodes.
	if err := protocol.CheckMessagePayload(f.Payload); err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, protocol.ReasonOf(err)), false)
		return
	}
	d := endpoint.Route(ep, routing.Message, f.Header.Target, f.Header.Ext)
	switch d.Action {
	case routing.ActionReject:
		ep.Send(reply(f, protocol.TypeError, d.Code, d.Reason), false)
		return
	case routing.ActionSIP:
		if h.opts.Upstream == nil {
			ep.Send(reply(f, protocol.TypeError, protocol.CodeServiceUnavailable, "no SIP side for trunk "+d.Trunk), false)
			return
		}
		h.sendUp(ep, f, d)
		return
	}
	id := webID(d.Target)
	// With the sessions whose node died and whose clients have not
	// resumed yet: a message to them waits for the resume (a web
	// sender's only: the Upstream's gets no such wait).
	all, err := endpoint.FindHeld(h.dir, id)
	if err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeTemporarilyUnavail, endpoint.ErrLookup), false)
		return
	}
	var to []endpoint.Endpoint
	for _, e := range all {
		if e.ID() != ep.ID() {
			to = append(to, e)
		}
	}
	if len(to) == 0 {
		known := h.dir.Known(id)
		if d.Action == routing.ActionBuiltin && !known && h.opts.Upstream != nil && h.opts.Upstream.Routes(f.Header.Target) {
			h.sendUp(ep, f, d)
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
	h.relay(m, to, endpoint.OriginOf(ep, f), ep.Identity(), f.Header.Target, f.Header.Ext, f.Payload)
}

// relay sends m to the sessions to, one after the other, and arms its
// timeout. Sending in the caller's goroutine keeps the messages of one
// sender to one session in the order the sender sent them. o names the
// client frame relayed (zero for a message from the Upstream).
func (h *Handler) relay(m *message, to []endpoint.Endpoint, o endpoint.Origin, from, target string, ext []protocol.Ext, payload []byte) {
	if !h.reserve(len(to)) {
		m.answered = true
		h.report(m, protocol.TypeError, protocol.CodeServiceUnavailable, "too many messages in flight")
		return
	}
	m.mu.Lock()
	m.copies = len(to) + 1
	m.timer = time.AfterFunc(h.opts.Timeout, func() { h.expire(m) })
	m.mu.Unlock()
	for _, e := range to {
		out := &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Initiator: from, Target: target,
				Ext: ext},
			Payload: payload,
		}
		sh := h.shard(e.ID())
		sh.mu.Lock()
		sh.inbox(e.ID()).sending++
		sh.mu.Unlock()
		seq, err := endpoint.Relay(e, out, true, o)
		if a, done := h.record(sh, e.ID(), m, seq, err); done {
			h.copyDone(m, a)
		}
	}
	h.copyDone(m, nil) // the relay's hold
}

// inbox returns the inbox of session, making it. sh.mu must be held.
func (sh *shard) inbox(session string) *inbox {
	in := sh.to[session]
	if in == nil {
		in = &inbox{deliveries: map[string]*delivery{}}
		sh.to[session] = in
	}
	return in
}

// tidy drops in once it holds nothing. sh.mu must be held.
func (sh *shard) tidy(session string, in *inbox) {
	if in.sending > 0 {
		return
	}
	in.early, in.ended = nil, false
	if len(in.deliveries) == 0 {
		delete(sh.to, session)
	}
}

// record files the delivery of m to session after its Send returned seq
// and err. done is true when there is nothing to wait for: the send
// failed, the session ended, m expired, or the session's answer came
// first (then a is that answer); the delivery's place in the pending
// bound is then given back.
func (h *Handler) record(sh *shard, session string, m *message, seq uint64, err error) (a *sessionAnswer, done bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	in := sh.to[session]
	in.sending--
	defer sh.tidy(session, in)
	if err != nil || in.ended {
		h.pending.Add(-1)
		return nil, true
	}
	corr := "s" + strconv.FormatUint(seq, 10)
	m.mu.Lock()
	expired := m.expired
	if !expired {
		m.keys = append(m.keys, key{session, corr})
	}
	m.mu.Unlock()
	if expired {
		h.pending.Add(-1)
		return nil, true
	}
	for i := range in.early {
		if in.early[i].corr == corr {
			a := in.early[i]
			in.early = append(in.early[:i], in.early[i+1:]...)
			h.pending.Add(-1)
			return &a, true
		}
	}
	in.deliveries[corr] = &delivery{msg: m}
	return nil, false
}

// sendUp hands a send to the Upstream, as d routes it; its final code is
// the delivery report.
func (h *Handler) sendUp(ep endpoint.Endpoint, f *protocol.Frame, d routing.Decision) {
	var p protocol.MessagePayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, protocol.ReasonOf(err)), false)
		return
	}
	if !h.reserve(1) {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeServiceUnavailable, "too many messages in flight"), false)
		return
	}
	m := &message{from: ep, corr: protocol.ClientCorrelation(f), sub: f.Control.SubsessionID, target: f.Header.Target}
	err := h.opts.Upstream.Send(Outgoing{From: ep.Identity(), To: d.Target, Payload: p, Ext: f.Header.Ext, Route: d},
		func(code int, reason string, ext []protocol.Ext) {
			if !m.answer() {
				return
			}
			h.pending.Add(-1)
			switch {
			case code >= 200 && code < 300:
				h.report(m, protocol.TypeResponse, code, reason, ext...)
			case code == protocol.CodeServerError || code < 300 || code > 699:
				// 500 would end the sender's whole session (docs/protocol.md
				// §9.1).
				h.report(m, protocol.TypeError, protocol.CodeServiceUnavailable, reason, ext...)
			default:
				h.report(m, protocol.TypeError, code, reason, ext...)
			}
		})
	if err != nil {
		if m.answer() {
			h.pending.Add(-1)
		}
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, err.Error()), false)
	}
}

// Deliver hands a message from the Upstream to every live session of
// the web identity to, as request/send with initiator from. answer gets
// the first session's answer once, from any goroutine: its code (a 2xx
// for a response), reason and extension headers (for the header rules of
// the SIP response, {ext:NAME}); 480 when to has no live session, 404 when
// it is unknown, 408 after the report timeout, 503 when too many
// messages are in flight. It must not block. Deliver returns once the
// message is queued to every session.
func (h *Handler) Deliver(from, to string, p protocol.MessagePayload, answer func(code int, reason string, ext []protocol.Ext), ext ...protocol.Ext) {
	id := webID(to)
	sessions, err := endpoint.Find(h.dir, id)
	if err != nil {
		answer(protocol.CodeTemporarilyUnavail, endpoint.ErrLookup, nil)
		return
	}
	if len(sessions) == 0 {
		if h.dir.Known(id) {
			answer(protocol.CodeTemporarilyUnavail, protocol.Reason(protocol.CodeTemporarilyUnavail), nil)
		} else {
			answer(protocol.CodeNotFound, protocol.Reason(protocol.CodeNotFound), nil)
		}
		return
	}
	m := &message{answerFn: answer, target: id}
	h.relay(m, sessions, endpoint.Origin{}, from, id, ext, protocol.EncodePayload(p))
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
	a := sessionAnswer{corr: f.Control.CorrelationID, typ: protocol.TypeResponse, code: f.Header.ResponseCode, reason: f.Header.Reason, ext: f.Header.Ext}
	if f.Control.Type == protocol.TypeError {
		a.typ, a.code = protocol.TypeError, f.Header.ErrorCode
	} else if a.code == 0 {
		a.code = protocol.CodeOK
	}
	sh := h.shard(ep.ID())
	sh.mu.Lock()
	in := sh.to[ep.ID()]
	if in == nil {
		sh.mu.Unlock()
		return
	}
	d := in.deliveries[a.corr]
	if d == nil {
		if in.sending > len(in.early) {
			in.early = append(in.early, a)
		}
		sh.mu.Unlock()
		return
	}
	delete(in.deliveries, a.corr)
	sh.tidy(ep.ID(), in)
	sh.mu.Unlock()
	h.pending.Add(-1)
	h.copyDone(d.msg, &a)
}

// copyDone is called once for each copy of m that has answered (a) or
// never will (a nil), and once for the relay's hold on m. The first
// answer is the report; with none, the last copy gone is a 480.
func (h *Handler) copyDone(m *message, a *sessionAnswer) {
	m.mu.Lock()
	m.copies--
	last := m.copies == 0
	report := !m.answered && (a != nil || last)
	if report {
		m.answered = true
	}
	if last {
		m.timer.Stop() // no copy is left to drop
	}
	m.mu.Unlock()
	switch {
	case !report:
	case a != nil && m.answerFn != nil:
		// The answer's headers are for the Upstream's header rules
		// only: between web users the report carries none.
		h.report(m, a.typ, a.code, a.reason, a.ext...)
	case a != nil:
		h.report(m, a.typ, a.code, a.reason)
	default:
		h.report(m, protocol.TypeError, protocol.CodeTemporarilyUnavail, "")
	}
}

// expire ends m at its report timeout: 408 unless it has its report, and
// its deliveries dropped.
func (h *Handler) expire(m *message) {
	m.mu.Lock()
	report := !m.answered
	m.answered, m.expired = true, true
	keys := m.keys
	m.keys = nil
	m.mu.Unlock()
	h.forget(m, keys)
	if report {
		h.report(m, protocol.TypeError, protocol.CodeRequestTimeout, "no delivery report")
	}
}

// answer marks m answered, once: it returns false when it was already.
func (m *message) answer() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answered {
		return false
	}
	m.answered = true
	return true
}

// forget drops the deliveries of m still recorded under keys.
func (h *Handler) forget(m *message, keys []key) {
	for _, k := range keys {
		sh := h.shard(k.session)
		sh.mu.Lock()
		if in := sh.to[k.session]; in != nil {
			if d := in.deliveries[k.corr]; d != nil && d.msg == m {
				delete(in.deliveries, k.corr)
				h.pending.Add(-1)
				sh.tidy(k.session, in)
			}
		}
		sh.mu.Unlock()
	}
}

// report sends m's delivery report; ext are extension headers the
// upstream made of its answer (a SIP response's, by the to_web rules).
func (h *Handler) report(m *message, typ protocol.Type, code int, reason string, ext ...protocol.Ext) {
	if reason == "" {
		reason = protocol.Reason(code)
	}
	if m.answerFn != nil {
		m.answerFn(code, reason, ext)
		return
	}
	out := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageMessaging, SubsessionID: m.sub, CorrelationID: m.corr},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: m.from.Identity(), Target: m.target, Reason: reason, Ext: ext},
	}
	if typ == protocol.TypeError {
		out.Header.ErrorCode = code
	} else {
		out.Header.ResponseCode = code
	}
	m.from.Send(out, false)
}

// Holds reports whether the delivery to session recorded under corr
// may still be answered: recorded and not answered, or a relay to the
// session between its send and its record (it may be that one).
func (h *Handler) Holds(session, corr string) bool {
	sh := h.shard(session)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	in := sh.to[session]
	return in != nil && (in.sending > 0 || in.deliveries[corr] != nil)
}

// Resend takes out the delivery recorded for session under corr, to be
// sent to the session again: the session's node may have died before
// writing it (the node that relayed it keeps it until it is answered,
// docs/cluster.md "Delivery across nodes"), and the session's new node
// numbers it anew. It returns nil when there is nothing to send
// again: the copy was answered (its node had written it), dropped at its
// report timeout, or its session ended. Otherwise the caller sends it
// and calls done once, with the correlation id the new delivery got and
// whether it was delivered. Taken out until then, the deliveries of one
// dead node can be numbered anew in any order without one taking
// another's place; an answer under the new id that comes before done is
// kept for it, as a relay's is.
func (h *Handler) Resend(session, corr string) (done func(newCorr string, delivered bool)) {
	sh := h.shard(session)
	sh.mu.Lock()
	in := sh.to[session]
	var d *delivery
	if in != nil {
		d = in.deliveries[corr]
	}
	if d == nil {
		sh.mu.Unlock()
		return nil
	}
	delete(in.deliveries, corr)
	in.sending++
	sh.mu.Unlock()
	m := d.msg
	return func(newCorr string, delivered bool) {
		sh.mu.Lock()
		in := sh.to[session] // kept while sending
		in.sending--
		m.mu.Lock()
		expired := m.expired
		if delivered && !in.ended && !expired {
			for i, k := range m.keys {
				if k == (key{session, corr}) {
					m.keys[i].corr = newCorr
				}
			}
		}
		m.mu.Unlock()
		if !delivered || in.ended || expired {
			sh.tidy(session, in)
			sh.mu.Unlock()
			h.pending.Add(-1)
			if !expired {
				h.copyDone(m, nil)
			}
			return
		}
		// A delivery recorded under the new id was numbered by the dead
		// node too, and not sent again: no answer can come for it.
		stale := in.deliveries[newCorr]
		in.deliveries[newCorr] = d
		var early *sessionAnswer
		for i := range in.early {
			if in.early[i].corr == newCorr {
				a := in.early[i]
				early = &a
				in.early = append(in.early[:i], in.early[i+1:]...)
				delete(in.deliveries, newCorr)
				break
			}
		}
		sh.tidy(session, in)
		sh.mu.Unlock()
		if stale != nil {
			h.pending.Add(-1)
			h.copyDone(stale.msg, nil)
		}
		if early != nil {
			h.pending.Add(-1)
			h.copyDone(m, early)
		}
	}
}

// SessionEnded drops the deliveries to ep; a message none of whose copies
// can now be answered gets 480.
func (h *Handler) SessionEnded(ep endpoint.Endpoint) {
	sh := h.shard(ep.ID())
	sh.mu.Lock()
	in := sh.to[ep.ID()]
	if in == nil {
		sh.mu.Unlock()
		return
	}
	ds := in.deliveries
	in.deliveries = map[string]*delivery{}
	in.ended = true
	sh.tidy(ep.ID(), in)
	sh.mu.Unlock()
	h.pending.Add(-int64(len(ds)))
	for _, d := range ds {
		h.copyDone(d.msg, nil)
	}
}
