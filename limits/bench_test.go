package limits

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAllowFrame measures the per-frame check of many sessions of one
// application in parallel (each goroutine its own identity; they share the
// application's bucket, the contended word).
func BenchmarkAllowFrame(b *testing.B) {
	open := Quota{Sessions: -1, Frames: Rate{Rate: 1_000_000, Per: time.Second, Burst: 1 << 30}}
	benchAllowFrame(b, Profile{Identity: open, Application: open})
}

// BenchmarkAllowFrameDenied measures the same check when it refuses, as
// during a flood: the frame bucket is empty (one frame an hour), at the
// identity (each goroutine its own) or at the application (shared), and
// every refusal moves the shared denial counter. BenchmarkAllowFrame never
// reaches this path.
func BenchmarkAllowFrameDenied(b *testing.B) {
	open := Quota{Sessions: -1, Frames: Rate{Rate: 1_000_000, Per: time.Second, Burst: 1 << 30}}
	empty := Quota{Sessions: -1, Frames: Rate{Rate: 1, Per: time.Hour, Burst: 1}}
	for _, tc := range []struct {
		name string
		p    Profile
	}{
		{"identity", Profile{Identity: empty, Application: open}},
		{"application", Profile{Identity: open, Application: empty}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			allowed, sessions := benchAllowFrame(b, tc.p)
			// Only each bucket's burst of one may pass.
			if allowed > sessions {
				b.Fatalf("%d frames allowed by %d sessions: not the deny path", allowed, sessions)
			}
		})
	}
}

// benchAllowFrame runs AllowFrame b.N times under RunParallel, each
// goroutine a session of its own identity in one application with profile
// p, and returns how many frames were allowed and how many sessions ran.
func benchAllowFrame(b *testing.B, p Profile) (allowed, sessions int64) {
	l, err := New(Config{Profiles: map[string]Profile{"default": p}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var n, ok atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s, err := l.OpenSession("app", "", "user"+itoa(int(n.Add(1))))
		if err != nil {
			b.Error(err)
			return
		}
		defer s.Close()
		var mine int64
		for pb.Next() {
			if s.AllowFrame() {
				mine++
			}
		}
		ok.Add(mine)
	})
	return ok.Load(), n.Load()
}

// BenchmarkAllowHandshake measures the per-address check with lookups
// across many addresses.
func BenchmarkAllowHandshake(b *testing.B) {
	l, err := New(Config{Handshakes: Rate{Rate: 1_000_000, Per: time.Second, Burst: 1 << 30}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		base := n.Add(1) << 16
		i := uint32(0)
		for pb.Next() {
			v := base | (i & 1023)
			l.AllowHandshake(netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}))
			i++
		}
	})
}
