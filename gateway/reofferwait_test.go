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

// bobsNodeDiesUnread starts three gateways, has alice on n1 call bob on
// n2 (the call hosted on n1), and kills n2 while n1's store (n1) answers
// no read, counting the failed reads of bob's record.
func bobsNodeDiesUnread(t *testing.T) (gs []*Gateway, urls []string, n1 *unreadStore, a, b *peer, bsub string) {
	t.Helper()
	gs, urls = newClusterGatewaysOn(t, 3, func(st store.Store) store.Store {
		if n1 != nil {
			return st
		}
		n1 = &unreadStore{electingStore: electingStore{Store: st}}
		return n1
	})
	noStaleResends(gs...)
	a, b, bsub = aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	n1.key.Store(&b.sid)
	n1.down.Store(true)
	gs[1].node.Close()
	b.c.CloseNow()
	waitFor(t, "n1 to see n2 dead", func() bool { return gs[0].node.Down("n2") })
	return gs, urls, n1, a, b, bsub
}

// aliceReoffers has alice (a) re-offer on the call's subsession.
func aliceReoffers(a *peer) {
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
}

// bobAnswersTheReoffer has bob (w) read alice's re-offer within d, on
// his subsession bsub, and answer it, and alice (a) read his answer.
func bobAnswersTheReoffer(t *testing.T, w, a *peer, bsub string, d time.Duration) {
	t.Helper()
	ro := w.readWithin(d)
	expect(t, ro, protocol.TypeRequest, protocol.ActionStart)
	if ro.Control.SubsessionID != bsub {
		t.Fatalf("alice's re-offer reached bob on %q, want %q", ro.Control.SubsessionID, bsub)
	}
	answer(w, ro)
	if r := a.read(); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 || r.Control.SubsessionID != "c1" {
		t.Fatalf("alice's re-offer answered %s", r.Marshal())
	}
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
	_, urls, n1, a, b, bsub := bobsNodeDiesUnread(t)
	aliceReoffers(a)
	// Past what the six tries before read (two reads a try: the owner's
	// lookup and the dead session's adoption), still within the wait.
	for deadline := time.Now().Add(10 * time.Second); n1.failed.Load() <= 12; <-time.After(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n1 stopped reading bob's record after %d reads; alice read %s", n1.failed.Load(), a.read().Marshal())
		}
	}
	n1.down.Store(false)
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	bobAnswersTheReoffer(t, w, a, bsub, 10*time.Second)
}

// TestReOfferWaitsBehindWaitingFrames: in a call between alice on n1
// (its host) and bob on n2, n2 dies while n1's store answers no read;
// alice's candidate, relayed to bob's session, waits on n1 for it, and
// her re-offer, which may not wait among such frames (n1 needs its
// sequence now), waits for them to go: once n1 reads bob's record, it
// takes his session for his client's resume with the candidate, then
// the re-offer. Bob, resumed on n3, gets both in order, and his answer
// is alice's. Before, the re-offer was refused 480 at once (test/cluster
// TestNodeKilled, once in ten runs: the answer the call's adopter
// relayed to bob again waited for his resume).
func TestReOfferWaitsBehindWaitingFrames(t *testing.T) {
	gs, urls, n1, a, b, bsub := bobsNodeDiesUnread(t)
	const cand = "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host"
	aliceTrickles(a, cand)
	waitFor(t, "alice's candidate to wait for bob's session", func() bool { return gs[0].hasWaiting(b.sid) })
	aliceReoffers(a)
	behind := gs[0].metrics.cluster.WithLabelValues(kindWaiting, "request_behind")
	for deadline := time.Now().Add(10 * time.Second); counterValue(behind) == 0; <-time.After(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("alice's re-offer did not wait behind her candidate; alice read %s", a.read().Marshal())
		}
	}
	n1.down.Store(false)
	w := resumeWS(t, urls[2], "bob@example.com", b.sid, b.seq+1, b.last)
	wantCandidate(t, w, cand, 10*time.Second)
	bobAnswersTheReoffer(t, w, a, bsub, 5*time.Second)
}
