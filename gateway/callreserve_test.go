package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// TestClusterCallAdmissionRace: alice (calls: 2) has a session on each
// of two nodes, each seen by the other; each starts four calls at once:
// exactly two are admitted, the six others refused (503). Before, each
// node counted the other's calls from its view of the directory, which
// lags a call started a moment ago: both nodes admitted two.
func TestClusterCallAdmissionRace(t *testing.T) {
	const limit, each = 2, 4
	gs, urls := newClusterGatewaysMod(t, 2, nil, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Calls: limit}}}}
	})
	var alices []*peer
	for i, u := range urls {
		alices = append(alices, connectedOn(t, u, "alice@example.com"))
		for j := range each {
			connectedOn(t, u, fmt.Sprintf("c%d-%d@example.com", i, j))
		}
	}
	for _, g := range gs {
		waitFor(t, g.node.Name()+" to see alice's session elsewhere", func() bool { return len(g.node.Remote("alice@example.com")) == 1 })
	}
	var refused atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i, a := range alices {
		for j := range each {
			a.send(callStart("alice@example.com", fmt.Sprintf("c%d-%d@example.com", i, j), fmt.Sprintf("s%d", j)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := a.c.Read(ctx)
				if err != nil {
					return
				}
				f, err := protocol.Decode(data)
				if err == nil && f.Control.Type == protocol.TypeError && f.Header.ErrorCode == protocol.CodeServiceUnavailable {
					refused.Add(1)
				}
			}
		}()
	}
	held := func() int {
		n := 0
		for i, a := range alices {
			if s := gs[i].lookup(a.sid); s != nil {
				n += s.quota.Calls()
			}
		}
		return n
	}
	waitFor(t, fmt.Sprintf("%d of alice's %d calls refused", 2*each-limit, 2*each), func() bool {
		return int(refused.Load()) == 2*each-limit
	})
	waitFor(t, fmt.Sprintf("%d calls held", limit), func() bool { return held() == limit })
	if n := refused.Load(); n != 2*each-limit {
		t.Fatalf("%d calls refused, want %d", n, 2*each-limit)
	}
}

// TestCallReservationOnlyWhereNeeded: a call of an identity whose
// sessions are all on one node reads and writes nothing in the store
// (no call record), limit or not; only a call of an identity with
// sessions on another node reserves in the record, and its end takes
// the reservation out at once.
func TestCallReservationOnlyWhereNeeded(t *testing.T) {
	var reads atomic.Int32 // of call records
	gs, urls := newClusterGatewaysMod(t, 2, func(st store.Store) store.Store { return callReads{st, &reads} }, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Calls: 2}}}}
	})
	a, b, _ := aliceCallsBob(t, urls[0], urls[0])
	if n := reads.Load(); n != 0 {
		t.Fatalf("a call of an identity on one node read %d call records, want none", n)
	}
	key := callsKey(gs[0].lookup(a.sid).app, "alice@example.com")
	if _, _, err := gs[0].store.Get(context.Background(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a call of an identity on one node: call record read %v, want none", err)
	}
	// With a session of alice's on n2, her next call is reserved.
	a2 := connectedOn(t, urls[1], "alice@example.com")
	waitFor(t, "n2 to see alice's session on n1", func() bool { return len(gs[1].node.Remote("alice@example.com")) == 1 })
	a2.send(callStart("alice@example.com", "bob@example.com", "c2"))
	expect(t, b.read(), protocol.TypeRequest, protocol.ActionStart)
	if _, _, err := gs[1].store.Get(context.Background(), key); err != nil {
		t.Fatalf("a call of an identity on two nodes: call record read %v, want one", err)
	}
	// The call ends: its reservation goes at once (not after 30 s), and
	// alice on n1 may be in two calls again.
	c := connectedOn(t, urls[0], "carol@example.com")
	endsCall(t, a2, b, "alice@example.com", "bob@example.com", "c2")
	waitFor(t, "a2's reservation to go", func() bool {
		rec, _, err := readRecord[callReservations](context.Background(), gs[0], key)
		return err == nil && !slices.ContainsFunc(rec.Recent, func(e callReservation) bool { return e.Session == a2.sid })
	})
	callsSeen(t, gs[0], "alice@example.com", 0)
	a.send(callStart("alice@example.com", "carol@example.com", "c3"))
	expect(t, c.read(), protocol.TypeRequest, protocol.ActionStart)
}

// callReads counts the reads of call records in a store.
type callReads struct {
	store.Store
	n *atomic.Int32
}

func (c callReads) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if strings.HasPrefix(key, "calls.") {
		c.n.Add(1)
	}
	return c.Store.Get(ctx, key)
}

// TestCallReservationOutOfTheCallsLock: bob (calls: 2) has two sessions
// on n1 and one on n2; alice on n1 calls him, and the store holds n1's
// second reservation of bob's. Meanwhile, what looks at bob's calls on
// n1 (a drain's HasSIPCall) answers at once; once the store answers,
// the three ring. Before, the reservations were taken under the call's
// lock, one callee at a time: the first callee's leg was in the call
// and the lock held for up to the store's 5 s.
func TestCallReservationOutOfTheCallsLock(t *testing.T) {
	hold := &heldCallRecord{waiting: make(chan struct{}, 1), gate: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(hold.gate) }) }
	t.Cleanup(release)
	gs, urls := newClusterGatewaysMod(t, 2, func(st store.Store) store.Store { return heldCallStore{st, hold} }, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Calls: 2}}}}
	})
	b1 := connectedOn(t, urls[0], "bob@example.com")
	b2 := connectedOn(t, urls[0], "bob@example.com")
	b3 := connectedOn(t, urls[1], "bob@example.com")
	a := connectedOn(t, urls[0], "alice@example.com")
	waitFor(t, "n1 to see bob's session on n2", func() bool { return len(gs[0].node.Remote("bob@example.com")) == 1 })
	a.send(callStart("alice@example.com", "bob@example.com", "c1"))
	select {
	case <-hold.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("no second reservation of bob's within 10s")
	}
	answered := make(chan bool)
	go func() {
		answered <- gs[0].calls.HasSIPCall(gs[0].lookup(b1.sid))
	}()
	select {
	case <-answered:
	case <-time.After(2 * time.Second):
		release()
		<-answered
		t.Fatal("a look at bob's calls waited for the store's reservation")
	}
	release()
	for _, b := range []*peer{b1, b2, b3} {
		expect(t, b.read(), protocol.TypeRequest, protocol.ActionStart)
	}
}

// heldCallRecord makes a store hold the second read of a call record
// (calls.<hash>) until gate closes, saying so on waiting.
type heldCallRecord struct {
	reads   atomic.Int32
	waiting chan struct{}
	gate    chan struct{}
}

type heldCallStore struct {
	store.Store
	h *heldCallRecord
}

func (s heldCallStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if strings.HasPrefix(key, "calls.") && s.h.reads.Add(1) == 2 {
		s.h.waiting <- struct{}{}
		select {
		case <-s.h.gate:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return s.Store.Get(ctx, key)
}

// TestClusterCallAdmissionUnseenSession: alice (calls: 1) connects on
// n1 and on n2; her session on n1 calls carol, and n2 does not see
// that session in the directory (its entry taken out, as a view that
// has not read it yet). Alice's call on n2 is refused (503): n2 finds
// n1's session in alice's admission record and reserves on her call
// record, where n1, which found n2's session there, reserved hers.
// Before, neither node saw the other's session: each took the call
// from its own count, and n2's rang dave.
func TestClusterCallAdmissionUnseenSession(t *testing.T) {
	gs, urls := oneCallEach(t, 2)
	a1 := connectedOn(t, urls[0], "alice@example.com")
	a2 := connectedOn(t, urls[1], "alice@example.com")
	c := connectedOn(t, urls[0], "carol@example.com")
	connectedOn(t, urls[1], "dave@example.com")
	hide := func(g *Gateway, sid string) {
		t.Helper()
		if err := g.node.Unpublish(context.Background(), "alice@example.com", sid); err != nil {
			t.Fatal(err)
		}
	}
	// n1 does not see alice's session on n2.
	hide(gs[1], a2.sid)
	waitFor(t, "n1 not to see alice on n2", func() bool { return len(gs[0].node.Remote("alice@example.com")) == 0 })
	a1.send(callStart("alice@example.com", "carol@example.com", "c1"))
	expect(t, c.read(), protocol.TypeRequest, protocol.ActionStart)
	// Nor n2 alice's on n1, its calls included.
	hide(gs[0], a1.sid)
	waitFor(t, "n2 not to see alice on n1", func() bool { return len(gs[1].node.Remote("alice@example.com")) == 0 })
	refusedCall(t, a2, "alice@example.com", "dave@example.com")
}
