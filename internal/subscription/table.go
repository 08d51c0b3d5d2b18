// Package subscription holds what the subscription packages (presence,
// message_notification) share: a [Table] of subscriptions keyed by
// session and subsession, which also takes each subscription from its
// subscriber's [Quota], and the [Frames] that answer and notify a
// subscriber. What a subscription watches, how long it lives and what
// its notifies carry stay with each package.
package subscription

import "github.com/jsonrtc/jsonrtc/protocol"

// Key names a subscription: a subsession of a session.
type Key struct{ Session, Subsession string }

// Quota is implemented by subscribers whose concurrent subscriptions are
// limited: the gateway's sessions, whose quota counts per identity and
// per application (limits.Session). Presence and voicemail subscriptions
// share it: both cost a SIP subscription and a table entry alike.
type Quota interface {
	AcquireSubscription() bool
	ReleaseSubscription()
}

// LimitReached is the error code and reason a subscribe over its quota
// gets: 503, the code docs/protocol.md §9.2 gives to "overloaded or
// rate-limited" and the one every other limits refusal uses. (486 would
// tell an SDK the watched party is busy, which it is not.)
const (
	LimitReachedCode   = protocol.CodeServiceUnavailable
	LimitReachedReason = "subscription limit reached"
)

// Table finds subscriptions by key and by session, and holds each one's
// share of its subscriber's Quota from Add to Remove, so that every path
// that ends a subscription (unsubscribe, expiry, the session's end, the
// upstream ending it) gives the share back by ending it. S is the
// package's subscription type, usually a pointer. A Table is not safe
// for concurrent use: its owner's lock guards it. Its zero value is
// empty and ready.
type Table[S comparable] struct {
	byKey     map[Key]S
	bySession map[string]map[S]Quota // the quota a subscription holds, or nil
}

// Get returns the subscription under k.
func (t *Table[S]) Get(k Key) (S, bool) {
	s, ok := t.byKey[k]
	return s, ok
}

// Add puts s under k, replacing whatever was there (which keeps its
// quota until it is removed). When subscriber implements Quota, s takes
// one subscription from it first; when none is left Add adds nothing and
// returns false, and the subscribe must be refused with LimitReachedCode.
func (t *Table[S]) Add(k Key, s S, subscriber any) bool {
	q, _ := subscriber.(Quota)
	if q != nil && !q.AcquireSubscription() {
		return false
	}
	if t.byKey == nil {
		t.byKey, t.bySession = map[Key]S{}, map[string]map[S]Quota{}
	}
	t.byKey[k] = s
	m := t.bySession[k.Session]
	if m == nil {
		m = map[S]Quota{}
		t.bySession[k.Session] = m
	}
	if old, ok := m[s]; ok && old != nil {
		old.ReleaseSubscription() // s added twice: it holds one share
	}
	m[s] = q
	return true
}

// Remove forgets s, added under k, and gives back its quota. Another
// subscription now under k stays. Removing s again does nothing.
func (t *Table[S]) Remove(k Key, s S) {
	if cur, ok := t.byKey[k]; ok && cur == s {
		delete(t.byKey, k)
	}
	m := t.bySession[k.Session]
	q, ok := m[s]
	if !ok {
		return
	}
	delete(m, s)
	if len(m) == 0 {
		delete(t.bySession, k.Session)
	}
	if q != nil {
		q.ReleaseSubscription()
	}
}

// Len is the number of subscriptions.
func (t *Table[S]) Len() int { return len(t.byKey) }

// SessionLen is the number of session's subscriptions.
func (t *Table[S]) SessionLen(session string) int { return len(t.bySession[session]) }

// Session returns session's subscriptions, in no order. The slice is
// the caller's: removing while ranging over it is fine.
func (t *Table[S]) Session(session string) []S {
	m := t.bySession[session]
	out := make([]S, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	return out
}
