package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterCutOffLetsGo: a node whose lease writes fail for longer
// than the TTL with no peer answering it (cut off from its cluster, in
// the minority of a partition) closes its sessions' sockets with 1013,
// for their clients to resume on the majority, which has taken the node
// for down, and refuses sockets (503, /readyz) until its lease is
// written again; then a session resumes here. Before, the node kept its
// clients for as long as the partition lasted, their frames waiting for
// a store they could not reach (test/cluster TestClusterPartition).
func TestClusterCutOffLetsGo(t *testing.T) {
	var e *natsstore.Embedded
	gs, urls := newClusterGatewaysOn(t, 1, func(s store.Store) store.Store {
		e = s.(*natsstore.Embedded)
		return s
	})
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js := dropLeases(ctx, t, e)
	cut := time.Now()
	for {
		_, _, err := a.c.Read(ctx)
		if err == nil {
			continue
		}
		if code := websocket.CloseStatus(err); code != websocket.StatusTryAgainLater {
			t.Fatalf("alice's socket: %v, want a close with 1013", err)
		}
		break
	}
	if d := time.Since(cut); d < 3*time.Second {
		t.Fatalf("closed %v after the lease writes began to fail, within the TTL (3 s)", d)
	}
	if _, resp, err := websocket.Dial(ctx, urls[0], &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc}}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a socket while cut off: %v, %v; want 503", resp, err)
	}
	if err := gs[0].notReady(ctx); err == nil || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("readiness while cut off: %v", err)
	}
	// The bucket back, the lease is written again, and alice resumes.
	leasesBack(ctx, t, js, gs[0])
	resumeWS(t, urls[0], "alice@example.com", a.sid, a.seq+1, a.last)
}

// conflictUnread refuses one update as a revision conflict without
// applying it, and fails the two reads that follow it (update's check of
// the record, then the retry loop's): a leader elected at a partition's
// heal, not yet answering for the record this node wrote.
type conflictUnread struct {
	conflictOnce
	unread atomic.Int32
}

func (c *conflictUnread) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if c.armed.Load() {
		c.unread.Store(2)
	}
	return c.conflictOnce.Update(ctx, key, value, rev)
}

func (c *conflictUnread) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if c.unread.Add(-1) >= 0 {
		return nil, 0, context.DeadlineExceeded
	}
	return c.Store.Get(ctx, key)
}

// TestClusterOwnConflictUnreadKeepsSession: a write refused as a
// conflict while the record names this node, the read that would write
// over it failing, is made again at the next round, and the session
// goes on. Before, the copy ended as superseded once a later read named
// this node (test/cluster TestClusterPartition: bob's session on the
// majority at the heal, his client sent to another node).
func TestClusterOwnConflictUnreadKeepsSession(t *testing.T) {
	st := &conflictUnread{}
	keepsOnOwnConflict(t, func(s store.Store) store.Store { st.Store = s; return st }, &st.armed)
}

// dropLeases deletes the leases' bucket of the embedded NATS e: the
// node's lease writes fail, as the minority's of a partition do; with no
// peer, nobody answers its ping, and it is cut off.
// leasesBack undoes dropLeases and waits until g is ready again.
func leasesBack(ctx context.Context, t *testing.T, js jetstream.JetStream, g *Gateway) {
	t.Helper()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cluster.NodesBucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for g.notReady(ctx) != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("still not ready with the lease written again: %v", g.notReady(ctx))
		case <-time.After(50 * time.Millisecond): // polled: the lease is written on a ticker
		}
	}
}

func dropLeases(ctx context.Context, t *testing.T, e *natsstore.Embedded) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(e.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, cluster.NodesBucket); err != nil {
		t.Fatal(err)
	}
	return js
}

// TestCutOffDefersTheResumeTimeout: a session whose client does not
// resume within the resume timeout while its node is cut off from its
// cluster is not ended there (its end could not be made durable, and its
// calls' ends would reach their peers after the heal while the client
// resumes the record left: test/cluster TestClusterPartitionEveryLink);
// back in the cluster, its client resumes it.
func TestCutOffDefersTheResumeTimeout(t *testing.T) {
	var e *natsstore.Embedded
	gs, urls := newClusterGatewaysMod(t, 1, func(s store.Store) store.Store {
		e = s.(*natsstore.Embedded)
		return s
	}, func(c *Config) { c.Session.ResumeTimeout = Duration(time.Second) })
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := dropLeases(ctx, t, e)
	for {
		if _, _, err := a.c.Read(ctx); err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusTryAgainLater {
				t.Fatalf("alice's socket: %v, want a close with 1013", err)
			}
			break
		}
	}
	deferred := func() float64 {
		return counterValue(gs[0].metrics.cluster.WithLabelValues("resume_wait", "cut_off"))
	}
	waitFor(t, "the resume timeout deferred", func() bool { return deferred() == 1 })
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("alice's session ended while its node was cut off")
	}
	leasesBack(ctx, t, js, gs[0])
	resumeWS(t, urls[0], "alice@example.com", a.sid, a.seq+1, a.last)
	if d := deferred(); d != 1 {
		t.Fatalf("deferred %v times, want once", d)
	}
}
