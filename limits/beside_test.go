package limits

import (
	"errors"
	"testing"
)

// TestOpenSessionBeside: sessions elsewhere (other nodes) take their
// share of the identity's quota, never of another identity's; an
// unlimited quota stays unlimited.
func TestOpenSessionBeside(t *testing.T) {
	l := newLimiter(t, Config{Profiles: map[string]Profile{DefaultProfile: {Identity: Quota{Sessions: 3}}}})
	s, err := l.OpenSessionBeside("app", "", "alice", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var e *Error
	if _, err := l.OpenSessionBeside("app", "", "alice", 2); !errors.As(err, &e) || e.Limit != LimitSessions || e.Scope != ScopeIdentity {
		t.Fatalf("a 4th session of alice: %v", err)
	}
	if _, err := l.OpenSessionBeside("app", "", "alice", 5); err == nil {
		t.Fatal("alice over her limit elsewhere alone was admitted")
	}
	open(t, l, "app", "bob")

	u := newLimiter(t, Config{Profiles: map[string]Profile{DefaultProfile: {Identity: Quota{Sessions: -1}}}})
	if s, err := u.OpenSessionBeside("app", "", "alice", 1000); err != nil {
		t.Fatalf("unlimited: %v", err)
	} else {
		s.Close()
	}
}

// TestAcquireCallBeside: calls elsewhere (other nodes) take their share
// of the identity's calls quota; Calls counts the session's own; an
// unlimited quota stays unlimited.
func TestAcquireCallBeside(t *testing.T) {
	l := newLimiter(t, Config{Profiles: map[string]Profile{DefaultProfile: {Identity: Quota{Calls: 3}}}})
	s := open(t, l, "app", "alice")
	if !s.AcquireCallBeside(2) {
		t.Fatal("alice's 3rd call, 2 elsewhere, refused")
	}
	if s.AcquireCallBeside(2) {
		t.Fatal("alice's 4th call, 2 elsewhere, admitted")
	}
	if s.AcquireCallBeside(5) {
		t.Fatal("alice over her limit elsewhere alone was admitted")
	}
	if n := s.Calls(); n != 1 {
		t.Fatalf("Calls = %d, want 1", n)
	}
	s.ReleaseCall()
	if n := s.Calls(); n != 0 {
		t.Fatalf("Calls after release = %d, want 0", n)
	}
	u := newLimiter(t, Config{Profiles: map[string]Profile{DefaultProfile: {Identity: Quota{Calls: -1}}}})
	if !open(t, u, "app", "alice").AcquireCallBeside(1000) {
		t.Fatal("unlimited: refused")
	}
}
