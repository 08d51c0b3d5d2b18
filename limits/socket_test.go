package limits

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestSocketBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Profiles: map[string]Profile{"default": {
			Identity: Quota{Frames: Rate{Rate: 10, Per: time.Second, Burst: 5}},
		}}}
		l := newLimiter(t, cfg)
		s := l.NewSocket("no-such-profile") // the default profile's rate
		for i := range 5 {
			if v := s.Frame(nil); v != Allow {
				t.Fatalf("frame %d of the burst: %v", i+1, v)
			}
		}
		// Past the burst: the first denial is answered, the next ones in
		// the same second are not.
		if v := s.Frame(nil); v != DenyAnswer {
			t.Fatalf("first denial: %v, want DenyAnswer", v)
		}
		for i := range 10 {
			if v := s.Frame(nil); v != Deny {
				t.Fatalf("denial %d: %v, want Deny", i+2, v)
			}
		}
		if got := denials(l, LimitFrames, ScopeSocket); got != 11 {
			t.Errorf("frames/socket denials = %d, want 11", got)
		}
		time.Sleep(time.Second)
		// A second later one denial is answered again (the bucket is
		// full again: its burst of 5, spent here).
		for range 5 {
			if v := s.Frame(nil); v != Allow {
				t.Fatalf("refilled frame: %v", v)
			}
		}
		if v := s.Frame(nil); v != DenyAnswer {
			t.Fatalf("first denial of the next second: %v", v)
		}
		// A flood that goes on: more than 4 bursts of denials within the
		// window close the socket.
		n := 12 // denials so far in this window
		var v Verdict
		for {
			v = s.Frame(nil)
			n++
			if v != Deny {
				break
			}
		}
		if v != Flood || n != 4*5+1 {
			t.Fatalf("after %d denials: %v, want Flood after %d", n, v, 4*5+1)
		}
	})
}

func TestSocketChargesTheSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Profiles: map[string]Profile{"default": {
			Identity: Quota{Frames: Rate{Rate: 10, Per: time.Second, Burst: 5}},
		}}}
		l := newLimiter(t, cfg)
		q := open(t, l, "app", "alice@example.com")
		// Two sockets of one identity: each has a bucket of its own, and
		// both draw on the identity's.
		a, b := l.NewSocket(""), l.NewSocket("")
		for range 3 {
			if a.Frame(q) != Allow || b.Frame(q) == Flood {
				t.Fatal("refused within the sockets' budgets")
			}
		}
		if got := denials(l, LimitFrames, ScopeIdentity); got != 1 {
			t.Errorf("frames/identity denials = %d, want 1 (6 frames, burst 5)", got)
		}
	})
}

func TestMalformedOverAWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{})
		s := l.NewSocket("")
		// Bad frames spread out in time (with any number of good ones
		// between them) still add up.
		for i := range MaxMalformed - 1 {
			if !s.Malformed() {
				t.Fatalf("malformed frame %d closed the socket", i+1)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if s.Malformed() {
			t.Fatalf("malformed frame %d within %v allowed", MaxMalformed, MalformedWindow)
		}
		// One every MalformedWindow/MaxMalformed is tolerated for ever.
		s2 := l.NewSocket("")
		for i := range 3 * MaxMalformed {
			if !s2.Malformed() {
				t.Fatalf("slow malformed frame %d closed the socket", i+1)
			}
			time.Sleep(MalformedWindow / MaxMalformed)
		}
	})
}

func TestSocketUnlimited(t *testing.T) {
	l := newLimiter(t, Config{Profiles: map[string]Profile{"default": {Identity: Quota{Frames: Rate{Rate: -1}}}}})
	s := l.NewSocket("")
	for range 10000 {
		if s.Frame(nil) != Allow {
			t.Fatal("unlimited socket refused a frame")
		}
	}
}
