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
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cluster.NodesBucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for gs[0].notReady(ctx) != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("still not ready with the lease written again: %v", gs[0].notReady(ctx))
		case <-time.After(50 * time.Millisecond): // polled: the lease is written on a ticker
		}
	}
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
