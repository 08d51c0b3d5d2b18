package rtpengine

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolLostKeepsFigures: with FiguresInterval the pool queries each
// call after a good ping and keeps its figures, stamped with when they
// were taken; once the instance is lost, LastFigures still has them (the
// lost call's Delete has none), and the round stops querying a silent
// instance. Without FiguresInterval nothing is queried.
func TestPoolLostKeepsFigures(t *testing.T) {
	var on atomic.Bool
	on.Store(true)
	reply := answerFigures("query")
	f := newFakeNG(t, func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		if !on.Load() {
			return nil
		}
		return reply(f, c, req, n)
	})
	opt := &Options{Retransmit: 10 * time.Millisecond, Timeout: 50 * time.Millisecond}
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, f, opt)}}, &PoolOptions{Interval: 10 * time.Millisecond, LostAfter: 2, FiguresInterval: 20 * time.Millisecond})
	p.Start()
	defer p.Close()
	a, _ := NewPoolAdapter(p, PolicyAlways)
	before := time.Now()
	s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c", FromTag: "from"}, webrtcSDP)
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan struct{})
	s.OnLost(func() { close(lost) })
	waitFor(t, f, "a query's figures", func() bool { return len(s.LastFigures()) == 2 })
	on.Store(false)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("not lost within 10s")
	}
	legs := s.LastFigures()
	if len(legs) != 2 || legs[0].Side != SideWeb || legs[0].Packets != 10 || legs[0].Quality == nil || legs[1].Packets != 20 {
		t.Fatalf("last figures %+v, want the query's, the browser's leg first", legs)
	}
	for _, l := range legs {
		if l.At.Before(before) || l.At.After(time.Now()) {
			t.Fatalf("figures taken at %v, not during the call", l.At)
		}
	}
	if del, err := s.Delete(t.Context()); err != nil || del != nil {
		t.Fatalf("a lost call's Delete: %v %v", del, err)
	}
}

// TestPoolNoFigures: without FiguresInterval no call is queried.
func TestPoolNoFigures(t *testing.T) {
	f := newFakeNG(t, answerFigures("query"))
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, f, nil)}}, &PoolOptions{Interval: 10 * time.Millisecond})
	p.Start()
	defer p.Close()
	a, _ := NewPoolAdapter(p, PolicyAlways)
	s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c", FromTag: "from"}, webrtcSDP)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, f, "five more pings", func() bool { return len(calls(f)["ping"]) >= 6 })
	if q := calls(f)["query"]; len(q) != 0 || len(s.LastFigures()) != 0 {
		t.Fatalf("queried %v without FiguresInterval", q)
	}
}
