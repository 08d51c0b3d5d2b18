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
	l, err := New(Config{Profiles: map[string]Profile{"default": {
		Identity:    Quota{Sessions: -1, Frames: Rate{Rate: 1_000_000, Per: time.Second, Burst: 1 << 30}},
		Application: Quota{Sessions: -1, Frames: Rate{Rate: 1_000_000, Per: time.Second, Burst: 1 << 30}},
	}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s, err := l.OpenSession("app", "", "user"+itoa(int(n.Add(1))))
		if err != nil {
			b.Error(err)
			return
		}
		defer s.Close()
		for pb.Next() {
			s.AllowFrame()
		}
	})
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
