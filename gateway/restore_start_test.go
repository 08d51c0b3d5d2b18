package gateway

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jsonrtc/jsonrtc/store"
)

// slowListStore times out its first listings, as a loaded JetStream did
// at a node's start.
type slowListStore struct {
	store.Store
	fails atomic.Int32
}

func (s *slowListStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	if s.fails.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	return s.Store.Keys(ctx, prefix)
}

// TestRestartListingTimesOut: a gateway restarted on a store whose first
// listings of the session records time out starts all the same, and
// the session of its earlier life resumes on it. Before, it exited at
// start ("restoring sessions: context deadline exceeded").
func TestRestartListingTimesOut(t *testing.T) {
	k := &killedStore{Store: store.NewMemory()}
	g1, url1 := newGatewayOpts(t, nil, Options{Store: k})
	a := dial(t, url1, "jsonrtc", nil)
	a.connect("alice@example.com")
	k.killed.Store(true)
	a.c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	_ = g1.Shutdown(ctx)
	slow := &slowListStore{Store: k.Store}
	slow.fails.Store(2)
	_, url2 := newGatewayOpts(t, nil, Options{Store: slow})
	resumeWS(t, url2, "alice@example.com", a.sid, a.seq+1, a.last)
	if n := slow.fails.Load(); n >= 0 {
		t.Fatalf("the store was listed %d times, not 3", 2-n)
	}
}
