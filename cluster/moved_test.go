package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
)

// TestMovedNamesNewOwner: a session a let go to b's resume is found at b
// in a's view from then on, though the directory still names a (b has
// not written its entry yet, or a's own entry is heard late), until the
// directory names another owner; published by a again, it is a's.
func TestMovedNamesNewOwner(t *testing.T) {
	ctx := context.Background()
	_, start := embedded(t)
	a, b := start("a"), start("b")
	seeAlive(t, a, "b", ttl)
	publish := func(n *cluster.Node, e cluster.Entry) {
		t.Helper()
		if err := n.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// heard waits until a's view holds marker's entry: the watch delivers
	// in order, so whatever was written before it has been applied too.
	marks := 0
	heard := func() {
		t.Helper()
		marks++
		m := cluster.Entry{Session: fmt.Sprintf("mark%d", marks), Identity: "mark@example.com", Node: "b"}
		publish(b, m)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) { // polled: a watch feeds the view
			if _, ok := a.Owner(m.Session); ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("a never heard %s", m.Session)
			}
		}
	}
	owner := func() string {
		t.Helper()
		got := a.Remote("bob@example.com")
		if len(got) == 0 {
			return ""
		}
		return got[0].Node
	}
	bob := cluster.Entry{Session: "s1", Identity: "bob@example.com", Node: "a"}
	publish(a, bob)
	heard()
	if n := owner(); n != "" {
		t.Fatalf("bob's session here is remote at %q", n)
	}
	a.Moved(cluster.Entry{Session: "s1", Identity: "bob@example.com", Node: "b"})
	if n := owner(); n != "b" {
		t.Fatalf("bob's session let go to b is at %q in a's view", n)
	}
	// a's own entry, written before it let go, heard late.
	publish(b, bob)
	heard()
	if n := owner(); n != "b" {
		t.Fatalf("after a's earlier entry, bob's session is at %q in a's view, want b", n)
	}
	publish(b, cluster.Entry{Session: "s1", Identity: "bob@example.com", Node: "b"})
	heard()
	if n := owner(); n != "b" {
		t.Fatalf("after b's entry, bob's session is at %q in a's view", n)
	}
	// Back on a: its own entry names it again.
	publish(a, bob)
	heard()
	if n := owner(); n != "" {
		t.Fatalf("bob's session back on a is remote at %q", n)
	}
	// Let go, then taken back before b wrote its entry.
	a.Moved(cluster.Entry{Session: "s1", Identity: "bob@example.com", Node: "b"})
	publish(a, bob)
	heard()
	if n := owner(); n != "" {
		t.Fatalf("bob's session taken back by a is remote at %q", n)
	}
	// Let go before a's view had heard of it at all.
	a.Moved(cluster.Entry{Session: "s2", Identity: "carol@example.com", Node: "b"})
	if got := a.Remote("carol@example.com"); len(got) != 1 || got[0].Node != "b" {
		t.Fatalf("carol's session let go to b, never heard here: %+v", got)
	}
}
