// Package subscription holds what the subscription packages (presence,
// message_notification) share: a [Table] of subscriptions keyed by
// session and subsession, and the [Frames] that answer and notify a
// subscriber. What a subscription watches, how long it lives and what
// its notifies carry stay with each package.
package subscription

// Key names a subscription: a subsession of a session.
type Key struct{ Session, Subsession string }

// Table finds subscriptions by key and by session. S is the package's
// subscription type, usually a pointer. A Table is not safe for
// concurrent use: its owner's lock guards it. Its zero value is empty
// and ready.
type Table[S comparable] struct {
	byKey     map[Key]S
	bySession map[string]map[S]struct{}
}

// Get returns the subscription under k.
func (t *Table[S]) Get(k Key) (S, bool) {
	s, ok := t.byKey[k]
	return s, ok
}

// Add puts s under k, replacing whatever was there.
func (t *Table[S]) Add(k Key, s S) {
	if t.byKey == nil {
		t.byKey, t.bySession = map[Key]S{}, map[string]map[S]struct{}{}
	}
	t.byKey[k] = s
	m := t.bySession[k.Session]
	if m == nil {
		m = map[S]struct{}{}
		t.bySession[k.Session] = m
	}
	m[s] = struct{}{}
}

// Remove forgets s, added under k. Another subscription now under k
// stays.
func (t *Table[S]) Remove(k Key, s S) {
	if cur, ok := t.byKey[k]; ok && cur == s {
		delete(t.byKey, k)
	}
	if m := t.bySession[k.Session]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(t.bySession, k.Session)
		}
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
