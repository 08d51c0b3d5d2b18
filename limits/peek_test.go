package limits

import (
	"errors"
	"testing"
)

func TestPeekApplicationSessions(t *testing.T) {
	l := newLimiter(t, Config{Profiles: map[string]Profile{
		"default": {Application: Quota{Sessions: 2}},
		"open":    {Application: Quota{Sessions: -1}},
	}})
	if err := l.PeekApplicationSessions("web", ""); err != nil {
		t.Fatalf("unused application: %v", err)
	}
	a, err := l.OpenSession("web", "", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.OpenSession("web", "", "bob"); err != nil {
		t.Fatal(err)
	}
	var le *Error
	if err := l.PeekApplicationSessions("web", ""); !errors.As(err, &le) || le.Limit != LimitSessions || le.Scope != ScopeApplication {
		t.Fatalf("full application: %v", err)
	}
	// Peeking took nothing: closing one session makes room for one.
	a.Close()
	if err := l.PeekApplicationSessions("web", ""); err != nil {
		t.Fatalf("after a close: %v", err)
	}
	if _, err := l.OpenSession("web", "", "carol"); err != nil {
		t.Fatal(err)
	}
	if err := l.PeekApplicationSessions("other", "open"); err != nil {
		t.Fatalf("unlimited: %v", err)
	}
	if !errors.Is(l.PeekApplicationSessions("web", "nope"), ErrUnknownProfile) {
		t.Fatal("unknown profile")
	}
}
