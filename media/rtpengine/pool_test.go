package rtpengine

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// calls lists the call-id of each command f got, by command.
func calls(f *fakeNG) map[string][]string {
	out := map[string][]string{}
	for _, r := range f.requests() {
		cmd := r["command"].(string)
		id, _ := r["call-id"].(string)
		out[cmd] = append(out[cmd], id)
	}
	return out
}

// switchable answers as ok while on is set, and not at all otherwise.
func switchable(on *atomic.Bool) func(*fakeNG, string, map[string]any, int) map[string]any {
	return func(f *fakeNG, cookie string, req map[string]any, n int) map[string]any {
		if !on.Load() {
			return nil
		}
		return ok(f, cookie, req, n)
	}
}

func state(t *testing.T, p *Pool, i int) InstanceState {
	t.Helper()
	return p.Instances()[i]
}

// TestPoolAffinity: new calls are spread by their number of calls, and
// every later command of a call (answer, re-offer, its answer, delete)
// reaches the instance that took its first offer; a deleted call no
// longer counts there.
func TestPoolAffinity(t *testing.T) {
	fa, fb := newFakeNG(t, ok), newFakeNG(t, ok)
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, fa, nil)}, {Addr: "b", Ctl: dialFake(t, fb, nil)}}, nil)
	a, err := NewPoolAdapter(p, PolicyAlways)
	if err != nil {
		t.Fatal(err)
	}
	var ss []*Session
	for i := range 4 {
		s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: fmt.Sprint("c", i), FromTag: "f"}, webrtcSDP)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	if sa, sb := state(t, p, 0), state(t, p, 1); sa.Calls != 2 || sb.Calls != 2 {
		t.Fatalf("calls per instance %+v %+v, want 2 and 2", sa, sb)
	}
	for _, s := range ss {
		if _, err := s.Answer(t.Context(), "t", "answer"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.OfferFrom(t.Context(), SIPToWeb, "hold"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AnswerTo(t.Context(), SIPToWeb, "held"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(t.Context()); err != nil { // counted once
			t.Fatal(err)
		}
	}
	where := map[string]string{} // call-id: the instance that got its first offer
	for _, f := range []*fakeNG{fa, fb} {
		got := calls(f)
		if len(got["offer"]) != 4 || len(got["answer"]) != 4 || len(got["delete"]) != 4 {
			t.Fatalf("%s got %v: want two calls, each with two offers, two answers and two deletes", f.addr(), got)
		}
		for _, id := range got["offer"][:2] {
			if where[id] != "" {
				t.Fatalf("%s offered to both instances", id)
			}
			where[id] = f.addr()
		}
		for _, cmd := range []string{"offer", "answer", "delete"} {
			for _, id := range got[cmd] {
				if where[id] != f.addr() {
					t.Fatalf("%s: %s of %s, whose offer went elsewhere (%v)", f.addr(), cmd, id, got)
				}
			}
		}
	}
	if sa, sb := state(t, p, 0), state(t, p, 1); sa.Calls != 0 || sb.Calls != 0 {
		t.Fatalf("calls after the deletes %+v %+v", sa, sb)
	}
}

// TestPoolFailover: an instance that does not answer a call's first offer
// is marked down and the offer goes to the other, which then holds the
// call; later calls skip the down instance without trying it, until a
// ping finds it back.
func TestPoolFailover(t *testing.T) {
	var aOn atomic.Bool
	fa, fb := newFakeNG(t, switchable(&aOn)), newFakeNG(t, ok)
	opt := &Options{Retransmit: 20 * time.Millisecond, Timeout: 200 * time.Millisecond}
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, fa, opt)}, {Addr: "b", Ctl: dialFake(t, fb, opt)}}, nil)
	a, _ := NewPoolAdapter(p, PolicyAlways)
	// b takes a call first, so that a, with none, is the next pick.
	first, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c0", FromTag: "f"}, webrtcSDP)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls(fb)["offer"]) != 1 {
		t.Fatalf("first call went to a: %v", calls(fa))
	}
	s, out, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c1", FromTag: "f"}, webrtcSDP)
	if err != nil || out != "rewritten offer" {
		t.Fatalf("offer after failover: %q %v", out, err)
	}
	if got := calls(fa)["offer"]; len(got) != 1 || got[0] != "c1" {
		t.Fatalf("a got offers %v, want c1 once", got)
	}
	if st := state(t, p, 0); st.Up || st.Calls != 0 {
		t.Fatalf("a after its timeout: %+v", st)
	}
	if _, err := s.Answer(t.Context(), "t", "answer"); err != nil {
		t.Fatal(err)
	}
	if got := calls(fb); len(got["offer"]) != 2 || len(got["answer"]) != 1 || got["answer"][0] != "c1" {
		t.Fatalf("b got %v, want c0 and c1 and c1's answer", got)
	}
	// a is down: the next calls go to b without trying a.
	for i := range 2 {
		if _, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: fmt.Sprint("n", i), FromTag: "f"}, webrtcSDP); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(fa)["offer"]; len(got) != 1 {
		t.Fatalf("a, down, got offers %v", got)
	}
	if st := state(t, p, 1); st.Calls != 4 {
		t.Fatalf("b %+v, want 4 calls", st)
	}
	// a answers again: its pings find it up.
	aOn.Store(true)
	p.opt.Interval = 10 * time.Millisecond
	p.Start()
	defer p.Close()
	for !state(t, p, 0).Up {
		<-fa.got
	}
	next, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "back", FromTag: "f"}, webrtcSDP)
	if err != nil {
		t.Fatal(err)
	}
	if next.m.addr != "a" {
		t.Fatalf("a call after a came back went to %s", next.m.addr)
	}
	_ = first
}

// TestPoolStartSkipsSilent: the pings of Start find a silent instance
// before any call: calls never try it. With every instance silent, a new
// call tries two and fails.
func TestPoolStartSkipsSilent(t *testing.T) {
	var off atomic.Bool
	fa, fb := newFakeNG(t, switchable(&off)), newFakeNG(t, ok)
	opt := &Options{Retransmit: 20 * time.Millisecond, Timeout: 200 * time.Millisecond}
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, fa, opt)}, {Addr: "b", Ctl: dialFake(t, fb, opt)}}, &PoolOptions{Interval: time.Hour})
	p.Start()
	defer p.Close()
	if sa, sb := state(t, p, 0), state(t, p, 1); sa.Up || !sb.Up {
		t.Fatalf("after Start: %+v %+v", sa, sb)
	}
	a, _ := NewPoolAdapter(p, PolicyAlways)
	for i := range 3 {
		if _, _, err := a.Offer(t.Context(), SIPToWeb, Keys{CallID: fmt.Sprint("c", i), FromTag: "f"}, plainSDP); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(fa)["offer"]; len(got) != 0 {
		t.Fatalf("a, down, got offers %v", got)
	}

	dead := newFakeNG(t, switchable(&off))
	p2 := NewPool([]Instance{{Addr: "x", Ctl: dialFake(t, dead, opt)}, {Addr: "y", Ctl: dialFake(t, fa, opt)}}, nil)
	a2, _ := NewPoolAdapter(p2, PolicyAlways)
	if _, _, err := a2.Offer(t.Context(), WebToSIP, Keys{CallID: "d", FromTag: "f"}, webrtcSDP); !errors.Is(err, ErrTimeout) {
		t.Fatalf("offer with every instance silent: %v", err)
	}
	if n := len(calls(dead)["offer"]) + len(calls(fa)["offer"]); n != 2 {
		t.Fatalf("%d offers, want one to each", n)
	}
}

// TestPoolErrorKeepsUp: an instance answering an offer with an error is
// answering: the offer is tried on another, but the first stays up.
func TestPoolErrorKeepsUp(t *testing.T) {
	refuse := func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		if req["command"] == "offer" {
			return map[string]any{"result": "error", "error-reason": "Ran out of ports"}
		}
		return ok(f, c, req, n)
	}
	fa, fb := newFakeNG(t, refuse), newFakeNG(t, ok)
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, fa, nil)}, {Addr: "b", Ctl: dialFake(t, fb, nil)}}, nil)
	a, _ := NewPoolAdapter(p, PolicyAlways)
	for i := range 2 {
		s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: fmt.Sprint("c", i), FromTag: "f"}, webrtcSDP)
		if err != nil || s.m.addr != "b" {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if st := state(t, p, 0); !st.Up || st.Calls != 0 {
		t.Fatalf("a after refusing: %+v", st)
	}
}

// TestPoolWeights: new calls spread in proportion to the weights (the
// fewest calls per weight), refill an instance whose calls ended, and
// leave out an instance that is down.
func TestPoolWeights(t *testing.T) {
	var ins []Instance
	for i, w := range []int{1, 2, 3} {
		ins = append(ins, Instance{Addr: fmt.Sprint(i), Ctl: dialFake(t, newFakeNG(t, ok), nil), Weight: w})
	}
	p := NewPool(ins, nil)
	a, _ := NewPoolAdapter(p, PolicyAlways)
	on := map[string][]*Session{}
	offer := func(n int) {
		t.Helper()
		for i := range n {
			s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: fmt.Sprint("c", len(on), i), FromTag: "f"}, webrtcSDP)
			if err != nil {
				t.Fatal(err)
			}
			on[s.m.addr] = append(on[s.m.addr], s)
		}
	}
	want := func(calls ...int64) {
		t.Helper()
		for i, st := range p.Instances() {
			if st.Calls != calls[i] || st.Weight != i+1 {
				t.Fatalf("instances %+v, want calls %v", p.Instances(), calls)
			}
		}
	}
	offer(60)
	want(10, 20, 30)
	for _, s := range on["1"] {
		if _, err := s.Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	want(10, 0, 30)
	offer(20)
	want(10, 20, 30)
	p.mark(p.members[2], errors.New("down"))
	offer(30)
	want(20, 40, 30)
}

// waitFor reads f's datagrams until cond holds, failing after 10s.
func waitFor(t *testing.T, f *fakeNG, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-f.got:
		case <-deadline:
			t.Fatalf("%s: not within 10s; %s got %v", what, f.addr(), calls(f))
		}
	}
}

// TestPoolLostEndsCalls: an instance that fails LostAfter pings in a row
// (not one) loses its calls: each one's OnLost runs, its commands fail
// with ErrLost, its Delete returns at once and is sent when the instance
// answers again. The other instance's calls are untouched.
func TestPoolLostEndsCalls(t *testing.T) {
	var aOn atomic.Bool
	var silent atomic.Int64 // pings a left unanswered
	aOn.Store(true)
	fa := newFakeNG(t, func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		if !aOn.Load() {
			if req["command"] == "ping" && n == 1 {
				silent.Add(1)
			}
			return nil
		}
		return ok(f, c, req, n)
	})
	fb := newFakeNG(t, ok)
	opt := &Options{Retransmit: 10 * time.Millisecond, Timeout: 50 * time.Millisecond}
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, fa, opt)}, {Addr: "b", Ctl: dialFake(t, fb, opt)}},
		&PoolOptions{Interval: 10 * time.Millisecond, LostAfter: 2})
	p.Start()
	defer p.Close()
	a, _ := NewPoolAdapter(p, PolicyAlways)
	lost := make(chan *Session, 4)
	on := map[string][]*Session{}
	for i := range 4 {
		s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: fmt.Sprint("c", i), FromTag: "f"}, webrtcSDP)
		if err != nil {
			t.Fatal(err)
		}
		s.OnLost(func() {
			if n := silent.Load(); n < 2 {
				t.Errorf("call lost after %d failed pings, want 2", n)
			}
			lost <- s
		})
		on[s.m.addr] = append(on[s.m.addr], s)
	}
	aOn.Store(false)
	got := map[*Session]bool{}
	for range 2 {
		select {
		case s := <-lost:
			got[s] = true
		case <-time.After(10 * time.Second):
			t.Fatal("a's calls not lost within 10s")
		}
	}
	for _, s := range on["a"] {
		if !got[s] {
			t.Fatalf("lost %v, want a's calls", got)
		}
		if _, err := s.Answer(t.Context(), "t", "answer"); !errors.Is(err, ErrLost) {
			t.Fatalf("answer on a lost call: %v", err)
		}
		if _, err := s.Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range on["b"] {
		if _, err := s.Answer(t.Context(), "t", "answer"); err != nil {
			t.Fatalf("b's call: %v", err)
		}
	}
	if st := state(t, p, 0); st.Lost != 2 || st.Calls != 0 || st.Up {
		t.Fatalf("a %+v, want down, 2 lost, no calls", st)
	}
	aOn.Store(true)
	waitFor(t, fa, "the lost calls' deletes", func() bool {
		del := calls(fa)["delete"]
		return slices.Contains(del, on["a"][0].keys.CallID) && slices.Contains(del, on["a"][1].keys.CallID)
	})
	select {
	case s := <-lost:
		t.Fatalf("%+v lost too", s.keys)
	default:
	}
}

// TestPoolLateOfferDeleted: an instance that did not answer a first offer
// in time may have made the call all the same; the call goes on
// elsewhere, so the instance gets its delete once it answers a ping.
func TestPoolLateOfferDeleted(t *testing.T) {
	fa := newFakeNG(t, func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		if req["command"] == "offer" {
			return nil
		}
		return ok(f, c, req, n)
	})
	fb := newFakeNG(t, ok)
	opt := &Options{Retransmit: 10 * time.Millisecond, Timeout: 50 * time.Millisecond}
	// a's weight makes it the first pick.
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, fa, opt), Weight: 1000}, {Addr: "b", Ctl: dialFake(t, fb, opt)}},
		&PoolOptions{Interval: 10 * time.Millisecond})
	p.Start()
	defer p.Close()
	a, _ := NewPoolAdapter(p, PolicyAlways)
	s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c", FromTag: "f"}, webrtcSDP)
	if err != nil || s.m.addr != "b" {
		t.Fatalf("offer: %v", err)
	}
	offered := calls(fa)["offer"]
	if len(offered) != 1 {
		t.Fatalf("a got offers %v, want one", offered)
	}
	waitFor(t, fa, "the delete of the offer a did not answer", func() bool {
		for _, r := range fa.requests() {
			if r["command"] == "delete" && r["call-id"] == offered[0] && r["from-tag"] == "f" && r["delete-delay"] == int64(0) {
				return true
			}
		}
		return false
	})
}

// An instance that restarts between two pings answers them all, yet has
// forgotten its calls: its uptime shows the restart, and the calls it no
// longer knows end while those it restored (from Redis) go on.
func TestPoolRestartLosesForgottenCalls(t *testing.T) {
	var born atomic.Int64 // the fake process's start, unix nanoseconds
	born.Store(time.Now().Add(-time.Hour).UnixNano())
	var restarted atomic.Bool
	f := newFakeNG(t, func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		switch req["command"] {
		case "statistics":
			up := time.Since(time.Unix(0, born.Load())) / time.Second
			return map[string]any{"result": "ok", "statistics": map[string]any{
				"totalstatistics": map[string]any{"uptime": fmt.Sprint(int64(up))}}}
		case "query":
			if restarted.Load() && req["call-id"] == "forgotten" {
				return map[string]any{"result": "error", "error-reason": "Unknown call-id"}
			}
		}
		return ok(f, c, req, n)
	})
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, f, fastRetry)}}, &PoolOptions{Interval: 10 * time.Millisecond})
	p.Start()
	defer p.Close()
	a, _ := NewPoolAdapter(p, PolicyAlways)
	lost := make(chan string, 2)
	calls := map[string]*Session{}
	for _, id := range []string{"forgotten", "restored"} {
		s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: id, FromTag: "f"}, webrtcSDP)
		if err != nil {
			t.Fatal(err)
		}
		s.OnLost(func() { lost <- id })
		calls[id] = s
	}
	seen := func(cmd string) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		k := 0
		for _, r := range f.reqs {
			if r["command"] == cmd {
				k++
			}
		}
		return k
	}
	// Pings go on with the uptime growing: nothing is lost.
	timeout := time.After(10 * time.Second)
	for base := seen("statistics"); seen("statistics") < base+5; {
		select {
		case <-f.got:
		case <-timeout:
			t.Fatal("no five statistics requests within 10s")
		}
	}
	if q := seen("query"); q != 0 {
		t.Fatalf("%d queries before any restart", q)
	}
	born.Store(time.Now().UnixNano())
	restarted.Store(true)
	select {
	case id := <-lost:
		if id != "forgotten" {
			t.Fatalf("lost %q, want the forgotten call", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the forgotten call not lost within 10s of the restart")
	}
	// Both calls were queried before the loss ran: the restored one is
	// still the pool's.
	if _, err := calls["restored"].Answer(t.Context(), "t", "answer"); err != nil {
		t.Fatalf("the restored call: %v", err)
	}
	if _, err := calls["forgotten"].Answer(t.Context(), "t", "answer"); !errors.Is(err, ErrLost) {
		t.Fatalf("the forgotten call: %v, want ErrLost", err)
	}
	if st := p.Instances()[0]; st.Lost != 1 || st.Calls != 2 {
		t.Fatalf("instance %+v, want 1 lost and 2 calls until deleted", st)
	}
	select {
	case id := <-lost:
		t.Fatalf("%q lost too", id)
	default:
	}
}

type ledgerLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *ledgerLog) Hold(k Keys, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, "hold "+k.CallID+" "+k.FromTag+" "+addr)
}

func (l *ledgerLog) Release(callID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, "release "+callID)
}

// TestPoolLedger: the pool's ledger hears of each call an instance takes
// and of its delete (once), and Sweep deletes a call a dead process left
// on an instance of the pool, counting "Unknown call-id" as done.
func TestPoolLedger(t *testing.T) {
	f := newFakeNG(t, func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		if req["command"] == "delete" && req["call-id"] == "gone" {
			return map[string]any{"result": "error", "error-reason": "Unknown call-id"}
		}
		return ok(f, c, req, n)
	})
	led := &ledgerLog{}
	p := NewPool([]Instance{{Addr: "a", Ctl: dialFake(t, f, fastRetry)}}, &PoolOptions{Ledger: led})
	a, _ := NewPoolAdapter(p, PolicyAlways)
	s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c1", FromTag: "f1"}, webrtcSDP)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"hold c1 f1 a", "release c1"}; !slices.Equal(led.ops, want) {
		t.Fatalf("ledger %q, want %q", led.ops, want)
	}
	if err := p.Sweep(t.Context(), "a", Keys{CallID: "left", FromTag: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Sweep(t.Context(), "a", Keys{CallID: "gone"}); err != nil {
		t.Fatalf("sweep of a call rtpengine no longer knows: %v", err)
	}
	if err := p.Sweep(t.Context(), "b", Keys{CallID: "left"}); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("sweep on an instance not in the pool: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.reqs[len(f.reqs)-2]
	if last["command"] != "delete" || last["call-id"] != "left" || last["from-tag"] != "x" || last["delete-delay"] != int64(0) {
		t.Fatalf("sweep sent %v", last)
	}
}
