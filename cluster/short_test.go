package cluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
)

// TestShort: with all three servers of a route-joined cluster current,
// no stream is short; with one gone, each stream of the node asked
// would lose its quorum as the node went too, and is named: the drain
// of the next node of a rolling restart waits on it
// (gateway.waitQuorum).
func TestShort(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var routes []string
	for range 3 {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", testenv.Port(t)))
	}
	es := make([]*natsstore.Embedded, 3)
	var wg sync.WaitGroup
	for i := range es {
		wg.Go(func() {
			e, err := natsstore.Start(ctx, &natsstore.EmbeddedOptions{
				Dir:          filepath.Join(dir, fmt.Sprint(i)),
				Store:        natsstore.Options{Replicas: 3},
				Cluster:      &natsstore.ClusterOptions{Name: fmt.Sprintf("n%d", i+1), Listen: routes[i], Routes: routes},
				ReadyTimeout: 30 * time.Second,
			})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(e.Close)
			es[i] = e
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	n1, err := cluster.Start(ctx, es[0].Conn(), cluster.Options{Name: "n1", Replicas: 3, LeaseTTL: ttl, DirectoryTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n1.Close)
	// Polled: a stream's followers report current to its leader a
	// moment after it is made, and a leader notices a server gone a
	// moment after, which no event tells.
	short := func(what string, ok func([]string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := n1.Short(ctx)
			if err == nil && ok(s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("short streams %v (%v), want %s", s, err, what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	short("none", func(s []string) bool { return len(s) == 0 })
	es[2].Close()
	want := []string{"KV_" + cluster.DirectoryBucket, "KV_" + cluster.NodesBucket}
	short(fmt.Sprint(want), func(s []string) bool {
		return !slices.ContainsFunc(want, func(b string) bool { return !slices.Contains(s, b) })
	})
}
