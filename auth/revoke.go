package auth

import (
	"container/heap"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// A bearer token stays valid until it expires, even after its holder has
// logged out. An application with jwt.revoke_on_logout remembers, until
// its expiry, each token whose session ended by logout, and refuses it
// from then on. The memory is bounded: when the table is full the entry
// that expires soonest is forgotten (its token would be refused for the
// least time anyway). Only a logout revokes: a socket lost to the network
// leaves the token valid, so the SDK's reconnects and resumes still work.

// defaultMaxRevoked bounds the table of revoked tokens: about 100 bytes
// an entry.
const defaultMaxRevoked = 100000

// revoked is the table of revoked tokens: key to expiry, with a min-heap
// of expiries to forget the soonest-expiring first.
type revoked struct {
	mu  sync.Mutex
	max int
	m   map[string]time.Time
	h   expiryHeap
}

func newRevoked(max int) *revoked {
	return &revoked{max: max, m: map[string]time.Time{}}
}

// add revokes key until exp.
func (r *revoked) add(key string, exp, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	if !exp.After(now) {
		return
	}
	if _, ok := r.m[key]; ok {
		return
	}
	if len(r.m) >= r.max {
		e := heap.Pop(&r.h).(revokedEntry)
		delete(r.m, e.key)
	}
	r.m[key] = exp
	heap.Push(&r.h, revokedEntry{key, exp})
}

// has reports whether key is revoked at now.
func (r *revoked) has(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp, ok := r.m[key]
	return ok && now.Before(exp)
}

func (r *revoked) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// expireLocked forgets the entries that have expired.
func (r *revoked) expireLocked(now time.Time) {
	for len(r.h) > 0 && !r.h[0].exp.After(now) {
		e := heap.Pop(&r.h).(revokedEntry)
		delete(r.m, e.key)
	}
}

type revokedEntry struct {
	key string
	exp time.Time
}

type expiryHeap []revokedEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(revokedEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// tokenKey names a token in the revocation table: its application and
// jti, or the hash of the whole token when it has none.
func tokenKey(app, jti, raw string) string {
	if jti != "" {
		return app + "\x00j" + jti
	}
	sum := sha256.Sum256([]byte(raw))
	return app + "\x00h" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// Logout tells the authenticator that p's session ended by logout (close
// 1000). For an application with jwt.revoke_on_logout, p's token is
// refused from then on until it expires; otherwise nothing happens.
func (a *Authenticator) Logout(p *Principal) {
	if p == nil || p.app == nil || p.app.jwt == nil || !p.app.jwt.revokeOnLogout || p.tokenKey == "" {
		return
	}
	// The token stays acceptable until exp plus the clock skew.
	a.revoked.add(p.tokenKey, p.Expires.Add(p.app.jwt.skew), a.now())
}
