package limits

import (
	"net/netip"
	"testing"
)

func TestGuestSessions(t *testing.T) {
	l, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuestSessions(l)
	a := netip.MustParseAddr("192.0.2.1")
	var rel []func()
	for i := range 3 {
		r, ok := g.Open(a, 3)
		if !ok {
			t.Fatalf("guest session %d refused", i+1)
		}
		rel = append(rel, r)
	}
	if _, ok := g.Open(a, 3); ok {
		t.Fatal("4th guest session of one address admitted")
	}
	// Another address, and another host of the same IPv6 /64 or not.
	if _, ok := g.Open(netip.MustParseAddr("192.0.2.2"), 3); !ok {
		t.Fatal("another address refused")
	}
	v6 := netip.MustParseAddr("2001:db8:1:2::1")
	for range 3 {
		g.Open(v6, 3)
	}
	if _, ok := g.Open(netip.MustParseAddr("2001:db8:1:2:ffff::9"), 3); ok {
		t.Fatal("another host of a full /64 admitted")
	}
	if _, ok := g.Open(netip.MustParseAddr("::ffff:192.0.2.1"), 3); ok {
		t.Fatal("a v4-mapped address escaped its IPv4 address's cap")
	}
	rel[0]()
	rel[0]() // idempotent
	if _, ok := g.Open(a, 3); !ok {
		t.Fatal("a release made no room")
	}
	if _, ok := g.Open(a, 3); ok {
		t.Fatal("a double release made room twice")
	}
	var denied uint64
	for _, d := range l.Denials() {
		if d.Limit == LimitSessions && d.Scope == ScopeAddress {
			denied = d.Count
		}
	}
	if denied != 4 {
		t.Fatalf("%d sessions/address denials counted, want 4", denied)
	}
	if _, ok := g.Open(a, -1); !ok {
		t.Fatal("unlimited refused")
	}
}

func TestGuestSessionsForget(t *testing.T) {
	l, _ := New(Config{}, nil)
	g := NewGuestSessions(l)
	r1, _ := g.Open(netip.MustParseAddr("192.0.2.1"), 5)
	r2, _ := g.Open(netip.MustParseAddr("192.0.2.1"), 5)
	r1()
	r2()
	if n := g.Addresses(); n != 0 {
		t.Fatalf("%d addresses tracked after every session ended", n)
	}
}
