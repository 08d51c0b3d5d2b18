package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSharedWatchMadeAgain: a watch of a Shared bucket that nats.go
// ends (its ordered consumer could not be made again: here the stream
// is gone for a moment, after a kill it is a stream electing a leader)
// is made again, and the changes after it are heard.
func TestSharedWatchMadeAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, start := embedded(t)
	a, b := start("a"), start("b")
	heard, _ := sharedHeard(ctx, t, a, b)
	js, err := jetstream.New(e.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, "shared_test"); err != nil {
		t.Fatal(err)
	}
	// nats.go finds the consumer gone at its next heartbeat check and
	// fails to make it again: the stream is not there.
	for a.WatchesEnded() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the watch never ended")
		}
		time.Sleep(100 * time.Millisecond) // polled: nats.go's heartbeat timer, no event
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "shared_test", History: 1, TTL: time.Minute, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	// b's handle writes to the bucket made again.
	for {
		if _, err := kv.Put(ctx, "YWxpY2VAZXhhbXBsZS5jb20.s2", []byte("two")); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-heard:
			if v == "two" {
				return
			}
		case <-time.After(500 * time.Millisecond): // the new watch may not be up yet: write again
		case <-ctx.Done():
			t.Fatal("a never heard the write after its watch was made again")
		}
	}
}

// until waits for v on c.
func until(t *testing.T, c <-chan string, v string) {
	t.Helper()
	for {
		select {
		case got := <-c:
			if got == v {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q never heard", v)
		}
	}
}

// TestWatchesMadeAgainAtAPeerDeath: when a peer goes down, a node makes
// its watches again (their consumers may have been the dead node's,
// which nats.go finds only by missed heartbeats, seconds later), and
// hears the changes after it.
func TestWatchesMadeAgainAtAPeerDeath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, start := embedded(t)
	a, b := start("a"), start("b")
	heard, sb := sharedHeard(ctx, t, a, b)
	down := seeAlive(t, a, "b", ttl)
	b.Close()
	select {
	case <-down:
	case <-ctx.Done():
		t.Fatal("b never seen down")
	}
	// The directory's watch and the bucket's.
	for a.Rewatched() < 2 {
		if ctx.Err() != nil {
			t.Fatalf("%d watches made again", a.Rewatched())
		}
		time.Sleep(10 * time.Millisecond) // polled: made again on the node's goroutines
	}
	// b's handle: the bucket's, on the connection the nodes share.
	if err := sb.Put(ctx, "alice@example.com", "s1", []byte("two")); err != nil {
		t.Fatal(err)
	}
	until(t, heard, "two")
}

// sharedHeard opens the bucket shared_test on a, whose values it returns
// as heard, and on b, whose handle it returns, once a heard b's first
// write.
func sharedHeard(ctx context.Context, t *testing.T, a, b *cluster.Node) (<-chan string, *cluster.Shared) {
	t.Helper()
	heard := make(chan string, 16)
	if _, err := a.OpenShared(ctx, "shared_test", time.Minute, func(identity, session string, value []byte) {
		if value != nil {
			heard <- string(value)
		}
	}); err != nil {
		t.Fatal(err)
	}
	sb, err := b.OpenShared(ctx, "shared_test", time.Minute, func(string, string, []byte) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Put(ctx, "alice@example.com", "s1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	until(t, heard, "one")
	return heard, sb
}
