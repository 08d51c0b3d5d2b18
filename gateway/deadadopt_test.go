package gateway

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/store"
	dto "github.com/prometheus/client_model/go"
)

// TestClusterAdoptionAfterSilentStore: alice on n1 calls bob on n2, and
// n1 dies while n2's store is silent (its buckets electing leaders) past
// the adoption's wait. n2 adopts the call once the store answers again,
// with no frame of bob's nor resume of alice's to make it. Before, the
// adoption gave up and the call's route named the dead n1 until a frame
// came (test/cluster TestCallsSurviveTheirHost adopted 80 to 92 of 100
// calls at load 30 to 40).
func TestClusterAdoptionAfterSilentStore(t *testing.T) {
	var st *electingStore
	gs, urls := secondWrapped(t, func(s store.Store) store.Store { st = &electingStore{Store: s}; return st })
	gs[1].resumeWait.Store(int64(500 * time.Millisecond))
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	callHost(t, gs[1], a.sid, "c1", "n1")
	tries := func() float64 {
		var sum float64
		for _, outcome := range []string{"adopted", "undecided"} {
			var m dto.Metric
			if err := gs[1].metrics.cluster.WithLabelValues("host_down", outcome).Write(&m); err != nil {
				t.Fatal(err)
			}
			sum += m.GetCounter().GetValue()
		}
		return sum
	}
	st.down.Store(true)
	gs[0].node.Close()
	a.c.CloseNow()
	// n2's adoption of bob's call, past its wait for the store.
	for deadline := time.Now().Add(15 * time.Second); tries() == 0; <-time.After(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("n2 has not tried to adopt bob's call 15s after n1's death")
		}
	}
	st.down.Store(false)
	callHost(t, gs[1], b.sid, bsub, "n2")
}

// TestClusterAdoptionAfterALostClaim: alice on n1 calls bob on n2, and
// n1 dies; n2's claim of the call's record is applied by the store but
// answered as failed (its answer lost, the store slow). n2 reads itself
// in the record at its next try and adopts the call all the same. Before,
// it took the call for one it had: the record named n2, and no node had
// the call (test/cluster TestCallsSurviveTheirHost adopted 62 of 100
// calls at load 25).
func TestClusterAdoptionAfterALostClaim(t *testing.T) {
	var st *appliedStore
	gs, urls := secondWrapped(t, func(s store.Store) store.Store { st = &appliedStore{Store: s}; return st })
	a, _, _ := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	callHost(t, gs[1], a.sid, "c1", "n1")
	st.armed.Store(true) // n2 writes no call record of its own before
	gs[0].node.Close()
	a.c.CloseNow()
	for deadline := time.Now().Add(15 * time.Second); gs[1].repl.adopted.Load() == 0; <-time.After(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("n2 has not adopted bob's call 15s after n1's death")
		}
	}
	if st.armed.Load() {
		t.Fatal("n2's claim was not the one whose answer was lost")
	}
	callHost(t, gs[1], a.sid, "c1", "n2")
	if got := gs[1].calls.Active(); got != 1 {
		t.Fatalf("n2 has %d calls, want 1", got)
	}
}

// secondWrapped runs a cluster of two nodes, n2's store wrapped by wrap.
func secondWrapped(t *testing.T, wrap func(store.Store) store.Store) ([]*Gateway, []string) {
	t.Helper()
	n := 0
	return newClusterGatewaysOn(t, 2, func(s store.Store) store.Store {
		n++
		if n == 2 {
			return wrap(s)
		}
		return s
	})
}
