package limits

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limit names what a denial was about; it is the "limit" label of the
// denial counters.
type Limit uint8

const (
	LimitSessions Limit = iota
	LimitCalls
	LimitSubscriptions
	LimitFrames
	LimitMessages
	LimitHandshakes
	// LimitCapacity: a new key found its table full of keys that hold
	// sessions (see Config.MaxKeys).
	LimitCapacity
	numLimits
)

func (l Limit) String() string {
	switch l {
	case LimitSessions:
		return "sessions"
	case LimitCalls:
		return "calls"
	case LimitSubscriptions:
		return "subscriptions"
	case LimitFrames:
		return "frames"
	case LimitMessages:
		return "messages"
	case LimitHandshakes:
		return "handshakes"
	case LimitCapacity:
		return "capacity"
	}
	return fmt.Sprintf("Limit(%d)", uint8(l))
}

// Scope names whose limit was hit; it is the "scope" label of the denial
// counters.
type Scope uint8

const (
	ScopeIdentity Scope = iota
	ScopeApplication
	ScopeAddress // a source IP address (IPv6: its /64)
	ScopeSocket  // one WebSocket (socket.go)
	numScopes
)

func (s Scope) String() string {
	switch s {
	case ScopeIdentity:
		return "identity"
	case ScopeApplication:
		return "application"
	case ScopeAddress:
		return "address"
	case ScopeSocket:
		return "socket"
	}
	return fmt.Sprintf("Scope(%d)", uint8(s))
}

// Error is a refused [Limiter.OpenSession]. Callers answer it with HTTP
// 503 at the handshake (or error 503 on a frame, docs/protocol.md §9.3).
type Error struct {
	Limit Limit
	Scope Scope
}

func (e *Error) Error() string {
	return "limits: " + e.Scope.String() + " " + e.Limit.String() + " limit reached"
}

// ErrUnknownProfile is returned by OpenSession for a profile the
// configuration does not define.
var ErrUnknownProfile = errors.New("limits: unknown profile")

// Options tune a Limiter; nil means defaults.
type Options struct {
	// Logger receives rare events (a table full of busy keys). Default:
	// discard.
	Logger *slog.Logger
}

// Limiter enforces a [Config]. It is safe for concurrent use, starts no
// goroutine and needs no Close: idle keys are evicted lazily, when their
// table needs room.
type Limiter struct {
	log      *slog.Logger
	epoch    time.Time
	profiles map[string]*profile
	hs       bucket
	ips      *table
	subjects *table
	denied   [numLimits][numScopes]atomic.Uint64
}

// profile is a Profile in the units the hot path uses.
type profile struct {
	identity, application quota
}

type quota struct {
	sessions, calls, subscriptions int64
	frames, messages               bucket
}

// bucket is a Rate as GCRA parameters; unlimited when interval < 0.
type bucket struct {
	interval, tolerance int64
}

func compileRate(r Rate) bucket {
	if r.Rate < 0 {
		return bucket{interval: -1}
	}
	iv := int64(r.Per) / int64(r.Rate)
	return bucket{interval: iv, tolerance: iv * int64(r.Burst-1)}
}

func compileQuota(q Quota) quota {
	return quota{
		sessions:      int64(q.Sessions),
		calls:         int64(q.Calls),
		subscriptions: int64(q.Subscriptions),
		frames:        compileRate(q.Frames),
		messages:      compileRate(q.Messages),
	}
}

func (b bucket) take(tat *atomic.Int64, now int64) bool {
	if b.interval < 0 {
		return true
	}
	return gcra(tat, now, b.interval, b.tolerance)
}

// New builds a Limiter from cfg, which it validates.
func New(cfg Config, opts *Options) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		log:      o.Logger,
		epoch:    time.Now(),
		profiles: make(map[string]*profile, len(cfg.Profiles)),
		hs:       compileRate(cfg.Handshakes),
		ips:      newTable(cfg.MaxKeys),
		subjects: newTable(cfg.MaxKeys),
	}
	for name, p := range cfg.Profiles {
		l.profiles[name] = &profile{identity: compileQuota(p.Identity), application: compileQuota(p.Application)}
	}
	return l, nil
}

// now is the limiter's clock: monotonic nanoseconds since New, never 0.
func (l *Limiter) now() int64 { return int64(time.Since(l.epoch)) + 1 }

func (l *Limiter) deny(lim Limit, s Scope) {
	n := l.denied[lim][s].Add(1)
	if lim == LimitCapacity && n&(n-1) == 0 {
		// Logged at 1, 2, 4, 8... so that a flood cannot flood the log.
		l.log.Warn("limits: table full of busy keys; raise limits.max_keys", "scope", s.String(), "denials", n)
	}
}

// AllowHandshake takes one handshake from the bucket of the source address
// (an IPv6 address counts as its /64). Call it before authenticating, so
// that a flood costs no signature checks; answer false with HTTP 429 or
// 503.
func (l *Limiter) AllowHandshake(addr netip.Addr) bool {
	if l.hs.interval < 0 {
		return true
	}
	now := l.now()
	ok := false
	if !l.ips.with(addrKey(addr), now, func(e *entry) { ok = l.hs.take(&e.frames, now) }) {
		l.deny(LimitCapacity, ScopeAddress)
		return false
	}
	if !ok {
		l.deny(LimitHandshakes, ScopeAddress)
	}
	return ok
}

// OpenSession admits a new session of identity in application app, whose
// limits are those of profile ("" for the default): it takes one session
// of the identity's and of the application's quotas. On success the
// caller owns the Session and must Close it when the session ends (not
// when its socket goes: a session waiting for a resume still counts). The
// error is an *Error, or ErrUnknownProfile.
func (l *Limiter) OpenSession(app, profileName, identity string) (*Session, error) {
	return l.OpenSessionBeside(app, profileName, identity, 0)
}

// OpenSessionBeside is OpenSession for an identity that has elsewhere
// live sessions this Limiter does not count (on the other nodes of a
// cluster): they take their share of the identity's quota.
func (l *Limiter) OpenSessionBeside(app, profileName, identity string, elsewhere int) (*Session, error) {
	if profileName == "" {
		profileName = DefaultProfile
	}
	p := l.profiles[profileName]
	if p == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownProfile, profileName)
	}
	now := l.now()
	s := &Session{l: l, p: p}
	okID, okApp := false, false
	// The identity key is checked first: one identity opening too many
	// sessions must not use up the application's quota.
	if !l.subjects.with(identityKey(app, identity), now, func(e *entry) {
		if okID = acquire(&e.sessions, beside(p.identity.sessions, elsewhere)); okID {
			s.id = e
		}
	}) {
		l.deny(LimitCapacity, ScopeIdentity)
		return nil, &Error{LimitCapacity, ScopeIdentity}
	}
	if !okID {
		l.deny(LimitSessions, ScopeIdentity)
		return nil, &Error{LimitSessions, ScopeIdentity}
	}
	if !l.subjects.with(appKey(app), now, func(e *entry) {
		if okApp = acquire(&e.sessions, p.application.sessions); okApp {
			s.app = e
		}
	}) {
		s.id.sessions.Add(-1)
		l.deny(LimitCapacity, ScopeApplication)
		return nil, &Error{LimitCapacity, ScopeApplication}
	}
	if !okApp {
		s.id.sessions.Add(-1)
		l.deny(LimitSessions, ScopeApplication)
		return nil, &Error{LimitSessions, ScopeApplication}
	}
	return s, nil
}

// beside is limit less the share taken elsewhere; unlimited (< 0) stays
// unlimited.
func beside(limit int64, elsewhere int) int64 {
	if limit < 0 {
		return limit
	}
	return max(limit-int64(elsewhere), 0)
}

// addrKey is the key of a source address: an IPv4 address, or the /64
// of an IPv6 one (a host has a /64 to pick addresses from).
func addrKey(addr netip.Addr) string {
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		a4 := addr.As4()
		return string(a4[:])
	}
	p, _ := addr.Prefix(64) // cannot fail: 64 bits of an IPv6 address
	a16 := p.Addr().As16()
	return string(a16[:])
}

func identityKey(app, identity string) string { return "i" + app + "\x00" + identity }
func appKey(app string) string                { return "a" + app }

// Denial is the count of one kind of denial since New.
type Denial struct {
	Limit Limit
	Scope Scope
	Count uint64
}

// Denials returns the denial counters, one per limit and scope that can
// occur, including those still at zero. It is what a metrics collector
// exports, as a counter with labels limit and scope.
func (l *Limiter) Denials() []Denial {
	out := make([]Denial, 0, 12)
	for lim := range numLimits {
		for sc := range numScopes {
			if !possible(lim, sc) {
				continue
			}
			out = append(out, Denial{Limit: lim, Scope: sc, Count: l.denied[lim][sc].Load()})
		}
	}
	return out
}

func possible(lim Limit, sc Scope) bool {
	switch lim {
	case LimitHandshakes:
		return sc == ScopeAddress
	case LimitCapacity:
		return sc != ScopeSocket
	}
	if sc == ScopeSocket {
		return lim == LimitFrames
	}
	if lim == LimitSessions {
		return true // per address too: guest sessions (GuestSessions)
	}
	return sc != ScopeAddress
}

// Keys returns how many keys the limiter tracks (addresses plus
// applications and identities), for a gauge.
func (l *Limiter) Keys() int { return l.ips.len() + l.subjects.len() }

// Session is the limits of one admitted session. Its methods are safe for
// concurrent use; the rate checks take no lock.
type Session struct {
	l       *Limiter
	p       *profile
	id, app *entry

	mu          sync.Mutex // guards the fields below, and the counts they mirror
	calls, subs int64      // held by this session
	closed      bool
}

// AllowFrame takes one frame from the identity's and the application's
// frame buckets. Call it for every client frame (acknowledgements and
// text pings included); on false answer error 503 to that frame and do not
// process it.
func (s *Session) AllowFrame() bool {
	now := s.l.now()
	if !s.p.identity.frames.take(&s.id.frames, now) {
		s.l.deny(LimitFrames, ScopeIdentity)
		return false
	}
	if !s.p.application.frames.take(&s.app.frames, now) {
		s.l.deny(LimitFrames, ScopeApplication)
		return false
	}
	return true
}

// AllowMessage takes one instant message (a messaging send) from the
// identity's and the application's message buckets.
func (s *Session) AllowMessage() bool {
	now := s.l.now()
	if !s.p.identity.messages.take(&s.id.messages, now) {
		s.l.deny(LimitMessages, ScopeIdentity)
		return false
	}
	if !s.p.application.messages.take(&s.app.messages, now) {
		s.l.deny(LimitMessages, ScopeApplication)
		return false
	}
	return true
}

// AcquireCall takes one concurrent call for the identity and the
// application; ReleaseCall gives it back. On false answer error 503 (or
// 486 toward an incoming call). It fails after Close.
func (s *Session) AcquireCall() bool { return s.AcquireCallBeside(0) }

// AcquireCallBeside is AcquireCall for an identity in elsewhere calls
// this Limiter does not count (on the other nodes of a cluster): they
// take their share of the identity's quota.
func (s *Session) AcquireCallBeside(elsewhere int) bool {
	return s.acquire(LimitCalls, &s.calls, func(e *entry) *atomic.Int64 { return &e.calls },
		beside(s.p.identity.calls, elsewhere), s.p.application.calls)
}

// CallsLimited reports whether the identity's concurrent calls are
// limited: only then does a cluster need to count them atomically.
func (s *Session) CallsLimited() bool { return s.p.identity.calls >= 0 }

// Calls returns how many calls the session holds.
func (s *Session) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.calls)
}

// ReleaseCall gives back a call taken with AcquireCall. Releasing more
// than was acquired, or after Close, does nothing.
func (s *Session) ReleaseCall() {
	s.release(&s.calls, func(e *entry) *atomic.Int64 { return &e.calls })
}

// AcquireSubscription takes one concurrent subscription (presence or
// voicemail) for the identity and the application.
func (s *Session) AcquireSubscription() bool {
	return s.acquire(LimitSubscriptions, &s.subs, func(e *entry) *atomic.Int64 { return &e.subscriptions },
		s.p.identity.subscriptions, s.p.application.subscriptions)
}

// ReleaseSubscription gives back a subscription taken with
// AcquireSubscription.
func (s *Session) ReleaseSubscription() {
	s.release(&s.subs, func(e *entry) *atomic.Int64 { return &e.subscriptions })
}

func (s *Session) acquire(lim Limit, held *int64, field func(*entry) *atomic.Int64, idMax, appMax int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if !acquire(field(s.id), idMax) {
		s.l.deny(lim, ScopeIdentity)
		return false
	}
	if !acquire(field(s.app), appMax) {
		field(s.id).Add(-1)
		s.l.deny(lim, ScopeApplication)
		return false
	}
	*held++
	return true
}

func (s *Session) release(held *int64, field func(*entry) *atomic.Int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || *held == 0 {
		return
	}
	*held--
	field(s.id).Add(-1)
	field(s.app).Add(-1)
}

// Close ends the session's holdings: its calls, subscriptions and the
// session itself. It is idempotent.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, e := range []*entry{s.id, s.app} {
		e.calls.Add(-s.calls)
		e.subscriptions.Add(-s.subs)
	}
	s.calls, s.subs = 0, 0
	// The session count goes last: it pins the entries against eviction.
	s.id.sessions.Add(-1)
	s.app.sessions.Add(-1)
}
