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
