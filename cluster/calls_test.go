package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
)

// TestRemoteCalls: a sums the calls of bob's sessions on live peers from
// its view (its own and other identities' aside), and a dead peer's stop
// counting once a hears it is down.
func TestRemoteCalls(t *testing.T) {
	ctx := context.Background()
	_, start := embedded(t)
	a, b, c := start("a"), start("b"), start("c")
	seeAlive(t, a, "b", ttl)
	down := seeAlive(t, a, "c", ttl)
	for _, e := range []cluster.Entry{
		{Session: "s1", Identity: "bob@example.com", Node: "b", Calls: 2},
		{Session: "s2", Identity: "bob@example.com", Node: "c", Calls: 1},
		{Session: "s3", Identity: "bob@example.com", Node: "a", Calls: 4},
		{Session: "s4", Identity: "carol@example.com", Node: "b", Calls: 8},
	} {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); a.RemoteCalls("bob@example.com") != 3; time.Sleep(10 * time.Millisecond) { // polled: a watch feeds the view
		if time.Now().After(deadline) {
			t.Fatalf("a counts %d calls of bob's elsewhere, want 3", a.RemoteCalls("bob@example.com"))
		}
	}
	c.Close()
	if got := <-down; got != "c" {
		t.Fatalf("a heard %s down, want c", got)
	}
	if n := a.RemoteCalls("bob@example.com"); n != 2 {
		t.Fatalf("with c down, a counts %d calls of bob's elsewhere, want 2", n)
	}
}
