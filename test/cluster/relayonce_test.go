package cluster

import (
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// TestCallFrameOnceAfterItsNodeKilled: bob's DTMF in alice's call,
// hosted on n1, reaches alice through n1; bob's node, n2, is killed at
// once, most often before it wrote bob's state that processed the DTMF
// (written with the acknowledgement, session.ack_delay later). Bob's
// client resumes on n3 and sends the DTMF again, and n1 relays it again:
// alice hears it once, then bob's next digit (docs/cluster.md, "A relay
// is taken once"). Before, alice heard "1" twice.
func TestCallFrameOnceAfterItsNodeKilled(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0)[:1], nil)
	bob := dial(t, "bob@example.com", urls(nodes, 1), nil)
	out, in := call(t, alice, bob) // hosted on n1, alice's node
	if err := in.DTMF(tctx(t), "1", 0); err != nil {
		t.Fatal(err)
	}
	if ev := callEvent(t, alice, client.CallDTMF); ev.Digits != "1" {
		t.Fatalf("alice heard %q", ev.Digits)
	}
	nodes[1].stop(t, syscall.SIGKILL)
	event(t, bob, client.EventResumed)
	if err := in.DTMF(tctx(t), "2", 0); err != nil {
		t.Fatal(err)
	}
	// The call's events at alice: the next is bob's "2".
	timeout := time.After(30 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-alice.Events():
			if ev.Kind != client.EventCall {
				continue
			}
			if ev.CallEvent != client.CallDTMF || ev.Digits != "2" {
				t.Fatalf("alice: call event %v (digits %q), want bob's DTMF 2", ev.CallEvent, ev.Digits)
			}
			got = true
		case <-timeout:
			t.Fatal("alice: no DTMF 2 within 30 s of bob's resume")
		}
	}
	// Whether n2 died before its write: then bob's client sent "1" again.
	t.Logf("relays taken before on n1: %q", metric(t, nodes[0].metrics, `jsonrtc_cluster_requests_total{kind="relay",outcome="taken_before"}`))
	if err := out.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	callEvent(t, bob, client.CallEnded)
}
