package presence

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/internal/subscription"
	"github.com/jsonrtc/jsonrtc/presence/pidf"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Handler is the presence server between web users and the web side of
// presence toward an Upstream.
//
// Lock order: Handler.mu, then the Directory's lock (Known, Sessions),
// then an Endpoint's own lock inside Send. Frames are sent under mu so
// that every watcher sees changes in the order they happened; the
// gateway must therefore never call the Handler while holding its
// session table's lock. Upstream.Subscribe and stop are called without
// mu.
type Handler struct {
	cfg   Config
	up    Upstream
	allow func(watcher, presentity string) bool
	dir   endpoint.Directory
	local func(identity, session string, r *RemoteSession)
	log   *slog.Logger
	// rlog: lines that frames and SIP messages from outside cause (ratelog).
	rlog *ratelog.Logger

	mu   sync.Mutex
	subs subscription.Table[*sub]
	ents map[string]*entity
	// lastPub orders publications: a publication's time, made later
	// than the one before when the clock did not move.
	lastPub time.Time
	// resubs: the Upstream subscriptions of sessions taken over, made
	// again once mu is released (unlock), as Upstream.Subscribe needs.
	resubs []*sub
}

// unlock releases mu and then makes the Upstream subscriptions that
// adoptLocked queued.
func (h *Handler) unlock() {
	r := h.resubs
	h.resubs = nil
	h.mu.Unlock()
	for _, s := range r {
		h.subscribeUp(s)
	}
}

// entity is a web presentity: an identity with live sessions or
// watchers.
type entity struct {
	id       string
	sessions map[string]struct{}
	pubs     map[string]publication // by session id
	// remote: its live sessions on other nodes of a cluster, by id.
	remote   map[string]RemoteSession
	watchers map[*sub]struct{}
	last     protocol.PresencePayload // the state last notified
	// guest: a session of a guest (see Guest) made it: its state is for
	// web watchers only, never published upstream.
	guest bool
	// upstream: a session of it published (or watched, with
	// Config.PublishWhenWatching), so its state goes to the Upstream
	// until its last session ends. A user who never set a state gets no
	// tuple from the gateway next to those of her SIP phone.
	upstream bool
}

// Guest is implemented by endpoints that may be anonymous guests. A
// guest must cost the SIP network nothing until it places a call, so
// its presence (the open state of its session start, the closed state
// of its end, anything it publishes) is never sent upstream as PUBLISH;
// web watchers still see it.
type Guest interface{ Guest() bool }

func isGuest(ep endpoint.Endpoint) bool {
	g, ok := ep.(Guest)
	return ok && g.Guest()
}

type publication struct {
	state protocol.PresencePayload
	at    time.Time
}

// sub is one subscription: a subsession of a watcher's session.
type sub struct {
	ep     endpoint.Endpoint
	key    subscription.Key
	target string  // as the watcher named it
	ent    *entity // a web presentity, or nil for an upstream one
	expiry time.Duration
	until  time.Time // when timer fires
	timer  *time.Timer
	gen    uint64 // which arming of timer is current
	ended  bool

	// Upstream subscriptions only.
	stop      func()
	upEnded   bool // the Upstream ended it: stop is not called
	pending   bool // not yet accepted
	startCorr string
	startInit string
	lastUp    *protocol.PresencePayload
	lastExt   []protocol.Ext // the extension headers of lastUp's NOTIFY
	// ext: the start's extension headers, for its routing again on the
	// node that takes the session over.
	ext []protocol.Ext
	// quiet: made again on a node that took the session over: the
	// client holds it and has seen lastUp, so the new SUBSCRIBE's 2xx
	// is not told and its first NOTIFY only when it says something new.
	quiet bool
}

func (s *sub) frames() subscription.Frames {
	return subscription.Frames{Package: protocol.PackagePresence, Subsession: s.key.Subsession,
		Target: s.target, Subscriber: s.ep.Identity()}
}

// NewHandler returns a Handler that finds web users in dir.
func NewHandler(dir endpoint.Directory, o *Options) *Handler {
	var opts Options // nil: the defaults
	if o != nil {
		opts = *o
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		cfg: opts.Config.withDefaults(), up: opts.Upstream, allow: opts.Allow, dir: dir, local: opts.Local, log: log, rlog: ratelog.New(log, nil),
		ents: map[string]*entity{},
	}
}

// Subscriptions returns the number of live subscriptions, for leak
// checks.
func (h *Handler) Subscriptions() int {
	h.mu.Lock()
	defer h.unlock()
	return h.subs.Len()
}

// Presentities returns the number of web presentities with a record
// (live sessions or watchers), for leak checks.
func (h *Handler) Presentities() int {
	h.mu.Lock()
	defer h.unlock()
	return len(h.ents)
}

// HandleFrame processes a presence frame from ep, already deduplicated
// and validated.
func (h *Handler) HandleFrame(ep endpoint.Endpoint, f *protocol.Frame) {
	switch {
	case f.Control.Type == protocol.TypeRequest && f.Header.Action == protocol.ActionStart:
		h.start(ep, f)
	case f.Control.Type == protocol.TypeRequest && f.Header.Action == protocol.ActionPublish:
		h.publish(ep, f)
	case f.Control.Type == protocol.TypeMessage && f.Header.Action == protocol.ActionShutdown:
		h.unsubscribe(ep, f)
	case f.Control.Type == protocol.TypeRequest:
		ep.Send(reply(f, protocol.TypeError, protocol.CodeMethodNotAllowed, ""), false)
	}
	// Anything else (a client's answer to a notify, which needs none) is
	// dropped.
}

// SessionStarted tells the Handler that ep is a new live session: its
// identity becomes open (unless it published otherwise) and watchers are
// told. Calling it again, or on a resume, does nothing.
func (h *Handler) SessionStarted(ep endpoint.Endpoint) {
	h.mu.Lock()
	defer h.unlock()
	// Only a session the directory still lists: one that ended meanwhile
	// has had, or is about to get, its SessionEnded, which is ordered
	// after it leaves the directory.
	for _, x := range h.dir.Sessions(ep.Identity()) {
		if x.ID() == ep.ID() {
			h.touchLocked(ep)
			return
		}
	}
}

// SessionEnded ends ep's subscriptions and publication. When it was its
// identity's last live session, the identity becomes closed and its
// watchers are told.
func (h *Handler) SessionEnded(ep endpoint.Endpoint) {
	h.mu.Lock()
	var stops []func()
	for _, s := range h.subs.Session(ep.ID()) {
		if stop := h.endLocked(s); stop != nil {
			stops = append(stops, stop)
		}
	}
	if e := h.ents[ep.Identity()]; e != nil {
		// A copy from another node of a session that came here goes
		// with it.
		_, remote := e.remote[ep.ID()]
		delete(e.remote, ep.ID())
		if _, ok := e.sessions[ep.ID()]; ok || remote {
			delete(e.sessions, ep.ID())
			delete(e.pubs, ep.ID())
			if h.local != nil {
				h.local(e.id, ep.ID(), nil)
			}
			h.changedLocked(e)
			h.gcLocked(e)
		}
	}
	h.unlock()
	for _, stop := range stops {
		stop()
	}
}

func (h *Handler) start(ep endpoint.Endpoint, f *protocol.Frame) {
	if !ownAddress(ep, f.Header.Initiator) {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeForbidden, "initiator is not you"), false)
		return
	}
	target := f.Header.Target
	if target == "" {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, "start needs a target"), false)
		return
	}
	if err := pidf.Validate(protocol.PresencePayload{Presentity: target}); err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, "target: "+err.Error()), false)
		return
	}
	d := endpoint.Route(ep, routing.Subscribe, target, f.Header.Ext)
	if d.Action == routing.ActionReject {
		ep.Send(reply(f, protocol.TypeError, d.Code, d.Reason), false)
		return
	}
	expiry := seconds(h.cfg.Expiry)
	if r := seconds(f.Header.Expiry); r > 0 && r < expiry {
		expiry = max(r, seconds(h.cfg.MinExpiry))
	}
	key := subscription.Key{Session: ep.ID(), Subsession: f.Control.SubsessionID}

	h.mu.Lock()
	h.touchLocked(ep)
	if h.cfg.PublishWhenWatching {
		h.publishUpstreamLocked(h.ents[ep.Identity()])
	}
	if s, _ := h.subs.Get(key); s != nil {
		h.refreshLocked(s, f, expiry)
		h.unlock()
		return
	}
	var id string
	var web, found bool
	switch d.Action {
	case routing.ActionSIP:
		found = h.up != nil
	case routing.ActionWeb:
		id, web, found = webPresentity(d.Target), true, true
	default:
		id, web, found = h.resolveLocked(target)
	}
	switch {
	case !found:
		h.unlock()
		ep.Send(reply(f, protocol.TypeError, protocol.CodeNotFound, "no presence service for "+target), false)
		return
	case h.allow != nil && !h.allow(ep.Identity(), presentityName(id, target)):
		h.unlock()
		ep.Send(reply(f, protocol.TypeError, protocol.CodeForbidden, "not allowed to watch "+target), false)
		return
	case h.subs.SessionLen(ep.ID()) >= h.cfg.MaxSubscriptions:
		h.unlock()
		ep.Send(reply(f, protocol.TypeError, protocol.CodeServiceUnavailable, "too many subscriptions"), false)
		return
	}
	s := &sub{ep: ep, key: key, target: target, expiry: expiry}
	if web {
		e := h.entityLocked(id)
		reason := ""
		switch {
		case len(e.watchers) >= h.cfg.MaxWatchers:
			reason = "too many watchers of " + target
		case !h.subs.Add(key, s, ep):
			reason = subscription.LimitReachedReason
		}
		if reason != "" {
			h.gcLocked(e)
			h.unlock()
			ep.Send(reply(f, protocol.TypeError, protocol.CodeServiceUnavailable, reason), false)
			return
		}
		s.ent = e
		e.watchers[s] = struct{}{}
		h.armLocked(s, expiry)
		h.watchesChangedLocked(ep)
		ep.Send(h.accepted(s, protocol.ClientCorrelation(f), f.Header.Initiator), false)
		h.notifyLocked(s, e.state())
		h.unlock()
		h.log.Debug("presence subscription", "session_id", ep.ID(), "subsession_id", key.Subsession, "presentity", id)
		return
	}
	s.pending, s.startCorr, s.startInit, s.ext = true, protocol.ClientCorrelation(f), f.Header.Initiator, f.Header.Ext
	if !h.subs.Add(key, s, ep) {
		h.unlock()
		ep.Send(reply(f, protocol.TypeError, subscription.LimitReachedCode, subscription.LimitReachedReason), false)
		return
	}
	h.armLocked(s, seconds(h.cfg.PendingTimeout))
	h.unlock()
	h.subscribeUpRouted(s, d)
}

// subscribeUp makes s's Upstream subscription, routed again: a watch
// made again on the node that took its session over.
func (h *Handler) subscribeUp(s *sub) {
	d := endpoint.Route(s.ep, routing.Subscribe, s.target, s.ext)
	if d.Action == routing.ActionReject || d.Action == routing.ActionWeb {
		// The rules changed since: the client is told the watch ended.
		h.mu.Lock()
		if !s.ended {
			h.shutdownLocked(s, "subscription terminated")
			h.endLocked(s)
			h.watchesChangedLocked(s.ep)
		}
		h.unlock()
		return
	}
	h.subscribeUpRouted(s, d)
}

// subscribeUpRouted makes s's Upstream subscription as routed by d.
func (h *Handler) subscribeUpRouted(s *sub, d routing.Decision) {
	ep := s.ep
	stop := h.up.Subscribe(UpstreamRequest{Subscriber: ep.Identity(), Presentity: d.Target, Expiry: s.expiry, Ext: s.ext, Route: d},
		upstreamEvents{h, s})
	h.mu.Lock()
	ended := s.ended
	if !ended {
		s.stop = stop
	}
	callStop, again := ended && !s.upEnded, s.quiet
	h.unlock()
	if callStop && stop != nil {
		// The watcher left, or the upstream answered, before Subscribe
		// returned.
		stop()
	}
	h.log.Debug("upstream presence subscription", "session_id", ep.ID(), "subsession_id", s.key.Subsession, "presentity", s.target, "again", again)
}

// refreshLocked answers a start on a subsession that already subscribes.
func (h *Handler) refreshLocked(s *sub, f *protocol.Frame, expiry time.Duration) {
	ep := s.ep
	if s.target != f.Header.Target {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, "this subsession watches "+s.target), false)
		return
	}
	if s.pending {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeRequestPending, "the subscription is not answered yet"), false)
		return
	}
	s.expiry = expiry
	h.armLocked(s, expiry)
	h.watchesChangedLocked(ep)
	ep.Send(h.accepted(s, protocol.ClientCorrelation(f), f.Header.Initiator), false)
	// A refresh gets a notify, as in RFC 6665 section 4.2.1.2.
	switch {
	case s.ent != nil:
		h.notifyLocked(s, s.ent.state())
	case s.lastUp != nil:
		h.notifyLocked(s, *s.lastUp, s.lastExt...)
	}
}

// webPresentity is the web identity a target names (a sip:, sips: or
// pres: scheme dropped), for a watch routing sends to the web side.
func webPresentity(target string) string {
	if scheme, rest, ok := strings.Cut(target, ":"); ok && !strings.Contains(scheme, "@") {
		switch strings.ToLower(scheme) {
		case "sip", "sips", "pres":
			return rest
		}
	}
	return target
}

// resolveLocked decides who serves target: a web presentity (id), the
// Upstream, or nobody (found false).
func (h *Handler) resolveLocked(target string) (id string, web, found bool) {
	id = target
	scheme, rest, hasScheme := strings.Cut(target, ":")
	if hasScheme && strings.Contains(scheme, "@") {
		hasScheme = false // "user@host:port" has no scheme
	}
	if hasScheme {
		switch strings.ToLower(scheme) {
		case "sip", "sips", "pres":
			id = rest
		default:
			id = ""
		}
	}
	if id != "" {
		// A live session, not a watched entity (which outlives its last
		// session), makes id a web presentity: with none, the Upstream
		// serves it unless the directory says only the web side can.
		if e := h.ents[id]; (e != nil && e.live()) || h.dir.Known(id) {
			return id, true, true
		}
	}
	if h.up != nil {
		return "", false, true
	}
	if !hasScheme {
		return target, true, true
	}
	return "", false, false
}

func presentityName(id, target string) string {
	if id != "" {
		return id
	}
	return target
}

func (h *Handler) publish(ep endpoint.Endpoint, f *protocol.Frame) {
	if !ownAddress(ep, f.Header.Initiator) {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeForbidden, "initiator is not you"), false)
		return
	}
	var p protocol.PresencePayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, protocol.ReasonOf(err)), false)
		return
	}
	if err := pidf.Validate(p); err != nil {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, err.Error()), false)
		return
	}
	if p.Status == "" {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeBadRequest, "status is required"), false)
		return
	}
	if !ownAddress(ep, p.Presentity) {
		ep.Send(reply(f, protocol.TypeError, protocol.CodeForbidden, "one can only publish one's own presence"), false)
		return
	}
	p.Presentity = ""
	h.mu.Lock()
	defer h.unlock()
	h.touchLocked(ep)
	e := h.ents[ep.Identity()]
	e.pubs[ep.ID()] = publication{state: p, at: h.pubTimeLocked()}
	h.exportLocked(e, ep.ID())
	ep.Send(reply(f, protocol.TypeResponse, protocol.CodeOK, ""), false)
	if e.upstream {
		h.changedLocked(e)
	} else {
		h.publishUpstreamLocked(e)
	}
}

// publishUpstreamLocked starts sending e's state to the Upstream, unless
// it already does, and notifies a change of it.
func (h *Handler) publishUpstreamLocked(e *entity) {
	if e.upstream {
		return
	}
	e.upstream = true
	if !h.changedLocked(e) && h.up != nil && !e.guest {
		st := e.last
		st.Presentity = e.id
		h.up.Publish(e.id, st)
	}
}

func (h *Handler) unsubscribe(ep endpoint.Endpoint, f *protocol.Frame) {
	h.mu.Lock()
	s, _ := h.subs.Get(subscription.Key{Session: ep.ID(), Subsession: f.Control.SubsessionID})
	var stop func()
	if s != nil {
		stop = h.endLocked(s)
		h.watchesChangedLocked(ep)
	}
	h.unlock()
	if stop != nil {
		stop()
	}
}

// expire ends a subscription that was not refreshed in time, or whose
// upstream never answered.
func (h *Handler) expire(s *sub, gen uint64) {
	h.mu.Lock()
	if s.ended || s.gen != gen {
		h.unlock()
		return
	}
	if s.pending {
		s.ep.Send(h.startError(s, protocol.CodeRequestTimeout, "the presence server did not answer"), false)
	} else {
		h.shutdownLocked(s, "subscription expired")
	}
	stop := h.endLocked(s)
	h.watchesChangedLocked(s.ep)
	h.unlock()
	if stop != nil {
		stop()
	}
}

// touchLocked records ep as a live session of its identity.
func (h *Handler) touchLocked(ep endpoint.Endpoint) {
	e := h.entityLocked(ep.Identity())
	if _, ok := e.sessions[ep.ID()]; ok {
		return
	}
	e.sessions[ep.ID()] = struct{}{}
	if isGuest(ep) {
		e.guest = true
	}
	h.adoptLocked(e, ep)
	h.exportLocked(e, ep.ID())
	h.changedLocked(e)
}

func (h *Handler) entityLocked(id string) *entity {
	e := h.ents[id]
	if e == nil {
		e = &entity{id: id, sessions: map[string]struct{}{}, pubs: map[string]publication{},
			watchers: map[*sub]struct{}{}, remote: map[string]RemoteSession{}}
		e.last = e.state()
		h.ents[id] = e
	}
	return e
}

func (h *Handler) gcLocked(e *entity) {
	if len(e.sessions) == 0 && len(e.watchers) == 0 && len(e.remote) == 0 && h.ents[e.id] == e {
		delete(h.ents, e.id)
	}
}

// state composes the presentity's state from its sessions, here and on
// other nodes, and their publications: the most recent publication wins.
func (e *entity) state() protocol.PresencePayload {
	if !e.live() {
		return protocol.PresencePayload{Status: pidf.StatusClosed}
	}
	var best *publication
	for _, p := range e.pubs {
		if best == nil || p.at.After(best.at) {
			best = &p
		}
	}
	for id, r := range e.remote {
		if _, here := e.sessions[id]; here || r.State == nil {
			continue
		}
		if best == nil || r.At.After(best.at) {
			best = &publication{state: *r.State, at: r.At}
		}
	}
	if best != nil {
		return best.state
	}
	return protocol.PresencePayload{Status: pidf.StatusOpen}
}

// live reports whether e has a live session, here or on another node.
func (e *entity) live() bool { return len(e.sessions) > 0 || len(e.remote) > 0 }

// changedLocked notifies e's watchers, and the Upstream when e publishes
// there, when e's state differs from the one last notified; it reports
// whether it did. The last session's end withdraws e's publication
// upstream (watchers here see closed); e publishes upstream again only
// when a new session asks.
func (h *Handler) changedLocked(e *entity) bool {
	st := e.state()
	if st == e.last {
		return false
	}
	e.last = st
	for s := range e.watchers {
		h.notifyLocked(s, st)
	}
	if h.up != nil && !e.guest && e.upstream {
		if len(e.sessions) == 0 {
			h.up.Withdraw(e.id)
		} else {
			st.Presentity = e.id
			h.up.Publish(e.id, st)
		}
	}
	if len(e.sessions) == 0 {
		e.upstream = false
	}
	return true
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
	if s.ent != nil {
		delete(s.ent.watchers, s)
		h.gcLocked(s.ent)
	}
	return s.stop
}

func (h *Handler) armLocked(s *sub, d time.Duration) {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.gen++
	gen := s.gen
	s.until = time.Now().Add(d).Round(0)
	s.timer = time.AfterFunc(d, func() { h.expire(s, gen) })
}

func (h *Handler) notifyLocked(s *sub, st protocol.PresencePayload, ext ...protocol.Ext) {
	st.Presentity = s.target
	if _, err := s.ep.Send(s.frames().Notify(protocol.EncodePayload(st), ext...), true); err != nil {
		// The session is ending; SessionEnded will clean up.
		h.log.Debug("notify to ended session", "session_id", s.ep.ID(), "err", err)
	}
}

func (h *Handler) shutdownLocked(s *sub, reason string) {
	s.ep.Send(s.frames().Shutdown(reason), true)
}

// accepted is the 200 answer to a start.
func (h *Handler) accepted(s *sub, corr, initiator string) *protocol.Frame {
	return s.frames().Accepted(corr, initiator, int(s.expiry/time.Second))
}

// startError fails a pending upstream subscription.
func (h *Handler) startError(s *sub, code int, reason string) *protocol.Frame {
	return s.frames().StartError(s.startCorr, s.startInit, code, reason)
}

// ownAddress reports whether addr is empty or names ep's identity.
func ownAddress(ep endpoint.Endpoint, addr string) bool {
	id := ep.Identity()
	return addr == "" || addr == id || addr == "sip:"+id || addr == "sips:"+id
}

// reply answers the client frame f.
func reply(f *protocol.Frame, typ protocol.Type, code int, reason string) *protocol.Frame {
	return subscription.Reply(protocol.PackagePresence, f, typ, code, reason)
}

// upstreamEvents delivers one upstream subscription's outcome.
type upstreamEvents struct {
	h *Handler
	s *sub
}

func (u upstreamEvents) Accepted(ext ...protocol.Ext) {
	h, s := u.h, u.s
	h.mu.Lock()
	defer h.unlock()
	if s.ended || !s.pending {
		return
	}
	s.pending = false
	h.armLocked(s, s.expiry)
	// In the share from now on: the client holds it.
	h.watchesChangedLocked(s.ep)
	s.ep.Send(s.frames().Accepted(s.startCorr, s.startInit, int(s.expiry/time.Second), ext...), false)
	if s.lastUp != nil {
		h.notifyLocked(s, *s.lastUp, s.lastExt...)
	}
}

func (u upstreamEvents) Rejected(code int, reason string, ext ...protocol.Ext) {
	u.fail(code, reason, ext...)
}

func (u upstreamEvents) Terminated(reason string) {
	u.fail(protocol.CodeTemporarilyUnavail, reason)
}

// fail ends the subscription from the upstream side: an error to a
// pending start, else a shutdown. The upstream has ended its side, so
// stop is not called.
func (u upstreamEvents) fail(code int, reason string, ext ...protocol.Ext) {
	h, s := u.h, u.s
	h.mu.Lock()
	defer h.unlock()
	if s.ended {
		return
	}
	if s.pending {
		s.ep.Send(s.frames().Rejected(s.startCorr, s.startInit, code, reason, ext...), false)
	} else {
		h.shutdownLocked(s, "subscription terminated")
	}
	s.stop, s.upEnded = nil, true
	h.endLocked(s)
	h.watchesChangedLocked(s.ep)
}

func (u upstreamEvents) Notify(st protocol.PresencePayload, ext ...protocol.Ext) {
	h, s := u.h, u.s
	if pidf.Validate(st) != nil || st.Status == "" {
		h.rlog.Warn("upstream state", "invalid presence state from upstream", "presentity", s.target)
		return
	}
	h.mu.Lock()
	defer h.unlock()
	if s.ended {
		return
	}
	quiet := s.quiet && s.lastUp != nil && *s.lastUp == st
	s.quiet = false
	s.lastUp, s.lastExt = &st, ext
	if s.pending || quiet {
		// A watch made again whose first NOTIFY says what the client
		// saw last: nothing to tell it.
		return
	}
	// The share carries the state last told, so that a node taking the
	// session over tells only a change. It goes first: the gateway
	// writes a session's record ahead of the frames it sends, and a
	// record written between the notify and the share (a kill right
	// after) had the notify without its state, and the process
	// restarted on it told the client that state again.
	h.watchesChangedLocked(s.ep)
	h.notifyLocked(s, st, ext...)
}
