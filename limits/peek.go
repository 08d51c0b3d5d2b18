package limits

import "fmt"

// PeekApplicationSessions reports, without taking anything, whether
// application app (with limits profile profileName) is at its
// application-wide session quota: nil when a session could still be
// opened, else the *Error [Limiter.OpenSession] would return (counted as
// a denial). It lets the gateway refuse a handshake before the WebSocket
// upgrade; a nil answer promises nothing, OpenSession still decides, so
// a race between the two only moves a refusal after the upgrade.
func (l *Limiter) PeekApplicationSessions(app, profileName string) error {
	if profileName == "" {
		profileName = DefaultProfile
	}
	p := l.profiles[profileName]
	if p == nil {
		return fmt.Errorf("%w %q", ErrUnknownProfile, profileName)
	}
	max := p.application.sessions
	if max < 0 {
		return nil
	}
	e := l.subjects.peek(appKey(app))
	if e == nil || e.sessions.Load() < max {
		return nil
	}
	l.deny(LimitSessions, ScopeApplication)
	return &Error{LimitSessions, ScopeApplication}
}

// peek returns the entry of key, or nil; it never creates one.
func (t *table) peek(key string) *entry {
	s := t.shard(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[key]
}
