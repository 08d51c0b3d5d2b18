package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// slowKV's watches fail, as a consumer not made in time does, until the
// fails-th call.
type slowKV struct {
	jetstream.KeyValue
	fails, calls int
}

type nopWatcher struct{ jetstream.KeyWatcher }

func (s *slowKV) WatchAll(context.Context, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	s.calls++
	if s.calls <= s.fails {
		return nil, context.DeadlineExceeded
	}
	return nopWatcher{}, nil
}

// TestWatchAllTriesAgain: a watch of a bucket at start that times out
// (a loaded machine, a leader being elected) is made again until the
// start's deadline. Before, a node restarted in the cluster chaos test
// exited on the first failure ("watching jsonrtc_presence: context
// deadline exceeded").
func TestWatchAllTriesAgain(t *testing.T) {
	n := &Node{ctx: context.Background()}
	kv := &slowKV{fails: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.watchAll(ctx, kv); err != nil || kv.calls != 3 {
		t.Fatalf("watchAll: %v after %d calls, want the third to succeed", err, kv.calls)
	}
	kv = &slowKV{fails: 1 << 30}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := n.watchAll(ctx, kv); err == nil {
		t.Fatal("watchAll succeeded with every watch failing")
	}
}
