package gateway

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/store"
)

// TestCutOffBeforeMediaSweep: whatever the lease TTL (cluster.lease_ttl,
// 1 s at the least), a node cut off from its cluster sees it (a round of
// watchCutOff and a ping after its lease lapsed) and ends its calls with
// anchored media a margin before its peers, which took it for down when
// its lease lapsed, sweep its media ledger. Before, they swept a lease
// TTL after, and the cut-off node's calls went on without media (issue
// 14).
func TestCutOffBeforeMediaSweep(t *testing.T) {
	for _, ttl := range []time.Duration{time.Second, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, time.Minute} {
		wait := mediaSweepWait(ttl)
		if seen := cutOffSeen(ttl); seen+cutOffMargin > wait {
			t.Errorf("lease TTL %v: the cut-off node sees the cut %v after its lease lapsed; its peers sweep %v after: no margin of %v", ttl, seen, wait, cutOffMargin)
		}
		if wait < ttl {
			t.Errorf("lease TTL %v: sweep after %v, less than a TTL (a node back at once sweeps its own)", ttl, wait)
		}
	}
}

// cuttableStore is a store whose writes fail while cut (a node cut off
// from its cluster: its replicas are out of reach).
type cuttableStore struct {
	store.Store
	cut atomic.Bool
}

var errCut = errors.New("store out of reach")

func (s *cuttableStore) Delete(ctx context.Context, key string) error {
	if s.cut.Load() {
		return errCut
	}
	return s.Store.Delete(ctx, key)
}

// TestMediaLedgerReleaseRetried: a call's record whose delete fails (the
// node cut off from its cluster ended the call) is deleted once the store
// takes writes again, at the ledger's next refresh; before, it stayed
// until its age limit, for the survivors to sweep a call long gone.
func TestMediaLedgerReleaseRetried(t *testing.T) {
	st := &cuttableStore{Store: store.NewMemory()}
	cfg := DefaultConfig()
	g, err := New(cfg, &Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	ctx := context.Background()
	l := newMediaLedger(g, "n9")
	key := ledgerKey("media.n9.", "cut@here")
	l.Hold(rtpengine.Keys{CallID: "cut@here", FromTag: "t"}, "127.0.0.1:1")
	l.drain(ctx)
	st.cut.Store(true)
	l.Release("cut@here")
	l.drain(ctx)
	if _, _, err := st.Get(ctx, key); err != nil {
		t.Fatalf("record gone while the store was out of reach: %v", err)
	}
	st.cut.Store(false)
	l.refresh(ctx)
	l.drain(ctx)
	if _, _, err := st.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record after the store came back: %v, want it deleted", err)
	}
}
