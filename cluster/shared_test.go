package cluster_test

import (
	"context"
	"testing"
	"time"

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
