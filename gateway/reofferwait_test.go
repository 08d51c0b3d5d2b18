package gateway

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// unreadStore is an electingStore that counts the reads of one key it
// failed.
type unreadStore struct {
	electingStore
	key    atomic.Pointer[string]
	failed atomic.Int32
}

func (u *unreadStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	v, rev, err := u.electingStore.Get(ctx, key)
	if k := u.key.Load(); err != nil && k != nil && strings.HasSuffix(key, *k) {
		u.failed.Add(1)
	}
	return v, rev, err
}

// TestReOfferWaitsForAnUnreadRecord: in a call between alice on n1 (its
// host) and bob on n2, n2 dies while n1's store answers no read (its
// buckets electing leaders, as after a node's death); alice's re-offer,
// relayed to bob's session, is tried again until n1 reads bob's record,
// and takes his session for his client's resume: bob, resumed on n3, gets
// it, and his answer is alice's. Before, n1 gave up after six tries and
// refused the re-offer 480, "the call's peer is unreachable" (test/cluster
// TestNodeKilled, once in CI: the call's host read no record of bob's for
// a moment after the kill).
func TestReOfferWaitsForAnUnreadRecord(t *testing.T) {
	var n1 *unreadStore
	gs, urls := newClusterGatewaysOn(t, 3, func(st store.Store) store.Store {
		if n1 != nil {
			return st
		}
		n1 = &unreadStore{electingStore: electingStore{Store: st}}
		return n1
	})
	noStaleResends(gs...)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	n1.key.Store(&b.sid)
	n1.down.Store(true)
	gs[1].node.Close()
	b.c.CloseNow()
	waitFor(t, "n1 to see n2 dead", func() bool { return gs[0].node.Down("n2") })
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
	// Past what the six tries before read (two reads a try: the owner's
	// lookup and the dead session's adoption), still within the wait.
	for deadline := time.Now().Add(10 * time.Second); n1.failed.Load() <= 12; <-time.After(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n1 stopped reading bob's record after %d reads; alice read %s", n1.failed.Load(), a.read().Marshal())
		}
	}
	n1.down.Store(false)
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	ro := w.readWithin(10 * time.Second)
	expect(t, ro, protocol.TypeRequest, protocol.ActionStart)
	if ro.Control.SubsessionID != bsub {
		t.Fatalf("alice's re-offer reached bob on %q, want %q", ro.Control.SubsessionID, bsub)
	}
	answer(w, ro)
	if r := a.read(); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 || r.Control.SubsessionID != "c1" {
		t.Fatalf("alice's re-offer answered %s", r.Marshal())
	}
}
