package cluster_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
)

// TestShortLivedNodeReportedDown: a node that starts after this one
// listed the leases and dies before the next listing was never seen
// alive here; it is reported down all the same, once, so that what it
// hosted for sessions here ends (test/cluster TestNodeKilled: carol's
// call hosted on the killed node never ended on her node, which had not
// listed it yet).
func TestShortLivedNodeReportedDown(t *testing.T) {
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	e, n, kv := startNode(t, "a", ttl)
	// c lives: a knows a peer, and lists the bucket only now and then.
	c, err := cluster.Start(ctx, e.Conn(), cluster.Options{Name: "c", LeaseTTL: ttl, DirectoryTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for deadline := time.Now().Add(10 * ttl); !n.Alive("c"); {
		if time.Now().After(deadline) {
			t.Fatal("c not seen alive")
		}
		time.Sleep(ttl / 10) // polled: a reads the leases on a ticker
	}
	down := make(chan string, 8)
	// The handler reads the leases, as the gateway's does (Down): the
	// report is made with no read of them under way.
	n.OnNodeDown(func(node string) { n.Down(node); down <- node })
	// b writes one lease, after a's first listing, and dies.
	v, _ := json.Marshal(map[string]time.Time{"time": time.Now().UTC()})
	if _, err := kv.Put(ctx, "b", v); err != nil {
		t.Fatal(err)
	}
	select {
	case node := <-down:
		if node != "b" {
			t.Fatalf("%s reported down, want b", node)
		}
	case <-time.After(10 * ttl):
		t.Fatal("b, dead, never reported down")
	}
	if !n.Down("b") {
		t.Fatal("b is not Down")
	}
	select {
	case node := <-down:
		t.Fatalf("%s reported down again", node)
	case <-time.After(4 * ttl):
	}
}
