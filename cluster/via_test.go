package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
)

// TestRequestThroughAPeer: a request that finds no responders at a node
// alive here (the link between the two cut, each reaching a third) goes
// through the third, which relays the answer; with no live peer, or the
// node dead, it is "no node" as before.
func TestRequestThroughAPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, start := embedded(t)
	a, b := start("a"), start("b")
	got := make(chan string, 4)
	if err := b.Handle("echo", func(data []byte) []byte { got <- string(data); return append([]byte("b:"), data...) }); err != nil {
		t.Fatal(err)
	}
	seeAlive(t, a, "b", ttl)
	a.CutRoute("b", true)
	// No peer to go through.
	if _, err := a.Request(ctx, "b", "echo", []byte("1")); !errors.Is(err, cluster.ErrNoNode) {
		t.Fatalf("a to b cut, no third node: %v, want ErrNoNode", err)
	}
	c := start("c")
	seeAlive(t, a, "c", ttl)
	rep, err := a.Request(ctx, "b", "echo", []byte("2"))
	if err != nil || string(rep) != "b:2" {
		t.Fatalf("a to b through c: %q, %v", rep, err)
	}
	if m := <-got; m != "2" {
		t.Fatalf("b got %q", m)
	}
	if sent, _ := a.Relayed(); sent != 1 {
		t.Fatalf("a sent %d requests through a peer, want 1", sent)
	}
	if _, relayed := c.Relayed(); relayed != 1 {
		t.Fatalf("c relayed %d requests, want 1", relayed)
	}
	// b dead, its lease still live: c finds no responders either.
	b.Close()
	if _, err := a.Request(ctx, "b", "echo", []byte("3")); !errors.Is(err, cluster.ErrNoNode) {
		t.Fatalf("a to b dead, through c: %v, want ErrNoNode", err)
	}
	select {
	case m := <-got:
		t.Fatalf("b, closed, got %q", m)
	default:
	}
}
