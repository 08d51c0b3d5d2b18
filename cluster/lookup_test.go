package cluster_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/nats-io/nats.go/jetstream"
)

// TestLookupBeforeLeasesListed: a node that has not listed the leases
// since two peers started finds an identity's sessions on both of them
// alive (docs/cluster.md "Known defects": at a cluster's start a call to
// a user on two nodes got 404, only the first unknown peer's lease read).
func TestLookupBeforeLeasesListed(t *testing.T) {
	ctx := context.Background()
	// A long TTL: a's lease loop lists nothing during the test.
	_, a, kv := startNode(t, "a", time.Minute)
	// b and c start after a's listing: their leases, then a session
	// of bob's on each.
	for _, peer := range []string{"b", "c"} {
		v, _ := json.Marshal(map[string]time.Time{"time": time.Now().UTC()})
		if _, err := kv.Put(ctx, peer, v); err != nil {
			t.Fatal(err)
		}
		if err := a.Publish(ctx, cluster.Entry{Session: "s-" + peer, Identity: "bob@example.com", Node: peer}); err != nil {
			t.Fatal(err)
		}
	}
	got := a.Lookup(ctx, "bob@example.com")
	if len(got) != 2 {
		t.Fatalf("lookup found %+v, want bob's two sessions", got)
	}
	for _, e := range got {
		if !e.Alive {
			t.Errorf("bob's session %s on %s taken for dead; a sees %v", e.Session, e.Node, a.Nodes())
		}
	}
}

// startNode starts a node alone on an embedded NATS server of its own;
// kv is the leases' bucket, for the test to write peers' leases in.
func startNode(t *testing.T, name string, ttl time.Duration) (*natsstore.Embedded, *cluster.Node, jetstream.KeyValue) {
	t.Helper()
	e, start := embeddedTTL(t, ttl)
	n := start(name)
	return e, n, leases(t, e)
}

// leases is the leases' bucket of the nodes on e.
func leases(t *testing.T, e *natsstore.Embedded) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(e.Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), cluster.NodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
