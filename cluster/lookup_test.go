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
	got, err := a.Lookup(ctx, "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("lookup found %+v, want bob's two sessions", got)
	}
	for _, e := range got {
		if !e.Alive {
			t.Errorf("bob's session %s on %s taken for dead; a sees %v", e.Session, e.Node, a.Nodes())
		}
	}
}

// TestLookupErrorIsNotNobody: a lookup the bucket did not answer (ctx
// ended first, the bucket gone) returns an error, not an empty list: the
// gateway answered a call to a user online on another node 404 "unknown
// target" when the read timed out under load. A bucket that answers with
// no session returns none and no error.
func TestLookupErrorIsNotNobody(t *testing.T) {
	ctx := context.Background()
	e, a, kv := startNode(t, "a", time.Minute)
	v, _ := json.Marshal(map[string]time.Time{"time": time.Now().UTC()})
	if _, err := kv.Put(ctx, "b", v); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, cluster.Entry{Session: "s-b", Identity: "bob@example.com", Node: "b"}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Lookup(ctx, "carol@example.com"); err != nil || len(got) != 0 {
		t.Fatalf("carol's lookup: %+v, %v; want none and no error", got, err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if got, err := a.Lookup(ended, "bob@example.com"); err == nil {
		t.Fatalf("a lookup whose context ended found %+v and no error", got)
	}
	js, err := jetstream.New(e.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, cluster.DirectoryBucket); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if got, err := a.Lookup(short, "bob@example.com"); err == nil {
		t.Fatalf("a lookup of a bucket gone found %+v and no error", got)
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
