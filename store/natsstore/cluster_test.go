package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/jsonrtc/jsonrtc/store/storetest"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster runs three embedded servers joined through routes, with
// the bucket on replicas 3.
func startCluster(t *testing.T) []*natsstore.Embedded {
	t.Helper()
	return startClusterWith(t, nil)
}

// startClusterWith is startCluster with mod applied to each node's
// options (i: 0, 1, 2).
func startClusterWith(t *testing.T, mod func(i int, o *natsstore.EmbeddedOptions)) []*natsstore.Embedded {
	t.Helper()
	dir := t.TempDir()
	var routes []string
	for range 3 {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", testenv.Port(t)))
	}
	out := make([]*natsstore.Embedded, 3)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			o := &natsstore.EmbeddedOptions{
				Dir:          filepath.Join(dir, fmt.Sprint(i)),
				Store:        natsstore.Options{Replicas: 3},
				Cluster:      &natsstore.ClusterOptions{Name: fmt.Sprintf("n%d", i+1), Listen: routes[i], Routes: routes},
				ReadyTimeout: 30 * time.Second,
			}
			if mod != nil {
				mod(i, o)
			}
			e, err := natsstore.Start(context.Background(), o)
			if err != nil {
				t.Error(err)
				return
			}
			out[i] = e
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, e := range out {
			if e != nil {
				e.Close()
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// TestClusterReplicates: a value written through one node is read, with
// its revision, through another; compare-and-set holds across nodes.
func TestClusterReplicates(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t)
	rev, err := nodes[0].Create(ctx, "session.x", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	v, got, err := nodes[1].Get(ctx, "session.x")
	if err != nil || string(v) != "one" || got != rev {
		t.Fatalf("through n2: %q %d %v, want one %d", v, got, err, rev)
	}
	if _, err := nodes[2].Update(ctx, "session.x", []byte("three"), rev); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Update(ctx, "session.x", []byte("two"), rev); err == nil {
		t.Fatal("a stale revision updated through another node")
	}
}

// TestClusterRebindsDirectReads: a node whose bucket handle was bound
// while another node's start had turned direct gets back on sends its
// reads where nobody answers once they are off again ("no responders"):
// its records unreadable for good, its /readyz 503 past a minute
// (test/cluster TestReadyz), its resumes refused. A read that meets no
// responders binds the handle again and reads from the leader.
func TestClusterRebindsDirectReads(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t)
	rev, err := nodes[0].Create(ctx, "session.x", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].BindDirectForTest(ctx, nodes[1].Conn()); err != nil {
		t.Fatal(err)
	}
	// A direct get nobody answers may wait out the read's deadline:
	// the next read (as the gateway makes it, restoreWaiting) is bound
	// again.
	var v []byte
	var got uint64
	for try := range 2 {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		v, got, err = nodes[1].Get(rctx, "session.x")
		cancel()
		if err == nil {
			break
		}
		t.Logf("read %d: %v", try+1, err)
	}
	if err != nil || string(v) != "one" || got != rev {
		t.Fatalf("through n2: %q %d %v, want one %d", v, got, err, rev)
	}
}

// TestClusterBatch: a replicated bucket takes a round of writes as one
// atomic batch, compare-and-set per record, through any node.
func TestClusterBatch(t *testing.T) {
	nodes := startCluster(t)
	storetest.Batch(t, nodes[1])
}

// TestClusterBatchOnAgain: a node's start creates the bucket again,
// which turns its atomic batches off; the first batch refused turns
// them on again, and the next is taken.
func TestClusterBatchOnAgain(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t)
	js, err := jetstream.New(nodes[0].Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_"+natsstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowAtomicPublish = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ws := []store.Write{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}
	if _, err := nodes[1].WriteBatch(ctx, ws); err == nil || errors.Is(err, store.ErrConflict) {
		t.Fatalf("a batch with batches off: %v, want an error other than a conflict", err)
	}
	if revs, err := nodes[1].WriteBatch(ctx, ws); err != nil || len(revs) != 2 {
		t.Fatalf("the next batch: %v %v", revs, err)
	}
}
