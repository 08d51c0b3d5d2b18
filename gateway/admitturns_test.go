package gateway

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// heldAdmissionRead holds the first read of an admission record until
// released, and tells of every read.
type heldAdmissionRead struct {
	store.Store
	reads   chan string
	release chan struct{}
	once    sync.Once
}

func (h *heldAdmissionRead) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if strings.HasPrefix(key, "limit.") {
		select {
		case h.reads <- key:
		default: // (past the test's reads: the sessions' ends)
		}
		first := false
		h.once.Do(func() { first = true })
		if first {
			select {
			case <-h.release:
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
	}
	return h.Store.Get(ctx, key)
}

// TestClusterAdmissionsOfAnIdentityTakeTurns: two connects of alice at
// once on one node are admitted one after the other: the second reads
// her admission record only once the first is done with it. Read at
// once, every admission but one lost each compare-and-set to the
// others and read again, and of 24 at once on two nodes under load the
// last passed the deadline, answered 503 (TestClusterSessionAdmissionBurst,
// 1 run in about 200).
func TestClusterAdmissionsOfAnIdentityTakeTurns(t *testing.T) {
	h := &heldAdmissionRead{reads: make(chan string, 16), release: make(chan struct{})}
	gs, urls := newClusterGatewaysMod(t, 1, func(s store.Store) store.Store { h.Store = s; return h }, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Sessions: 2}}}}
	})
	g := gs[0]
	a, b := dial(t, urls[0], protocol.SubprotocolOracle, nil), dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.send(aliceConnects())
	key := <-h.reads
	b.send(aliceConnects())
	// b's admission waits for a's turn: it holds the lock's second place
	// (polled: the wait is on a mutex), and reads nothing meanwhile.
	deadline := time.After(10 * time.Second)
	for waiting := false; !waiting; {
		select {
		case k := <-h.reads:
			t.Fatalf("a second admission of alice read %s while the first had it", k)
		case <-deadline:
			t.Fatal("alice's second connect never came to her admission")
		case <-time.After(5 * time.Millisecond):
		}
		g.admitting.mu.Lock()
		waiting = g.admitting.m[key] != nil && g.admitting.m[key].users == 2
		g.admitting.mu.Unlock()
	}
	close(h.release)
	for _, p := range []*peer{a, b} {
		if r := p.read(); r.Control.Type != protocol.TypeResponse || r.Control.SessionID == "" {
			t.Fatalf("a connect of alice answered %s", r.Marshal())
		}
	}
}
