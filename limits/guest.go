package limits

import (
	"net/netip"
	"sync"
)

// GuestSessions bounds the live sessions of anonymous guests per source
// address (an IPv4 address, an IPv6 /64). Guests cost nothing to make,
// so without it one host could fill a guest application's session quota
// and lock real guests out. It is safe for concurrent use.
//
// Its memory is bounded by the sessions it admits: an address is
// tracked only while it holds one, and sessions are bounded by the
// gateway's session table and the application's quota.
type GuestSessions struct {
	l  *Limiter // counts denials as sessions/address
	mu sync.Mutex
	n  map[string]int
}

// NewGuestSessions returns an empty GuestSessions whose denials l counts.
func NewGuestSessions(l *Limiter) *GuestSessions {
	return &GuestSessions{l: l, n: map[string]int{}}
}

// Open takes one guest session of addr when it holds fewer than max
// (negative: unlimited). On success the caller must call release when
// the session ends (not when its socket goes: a session waiting for a
// resume still holds its place); release is idempotent. On false answer
// error 503: it is counted as a sessions/address denial.
func (g *GuestSessions) Open(addr netip.Addr, max int) (release func(), ok bool) {
	if max < 0 {
		return func() {}, true
	}
	k := addrKey(addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[k] >= max {
		g.l.deny(LimitSessions, ScopeAddress)
		return nil, false
	}
	g.n[k]++
	var once sync.Once
	return func() { once.Do(func() { g.close(k) }) }, true
}

func (g *GuestSessions) close(k string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[k]--; g.n[k] <= 0 {
		delete(g.n, k)
	}
}

// Addresses returns how many addresses hold guest sessions, for leak
// checks.
func (g *GuestSessions) Addresses() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.n)
}
