package cluster

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readyz returns n's /readyz status and body.
func readyz(t *testing.T, n *node) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// untilReady polls n's /readyz until 200, for 30 s, and returns how long
// it took.
func untilReady(t *testing.T, n *node) time.Duration {
	t.Helper()
	return untilReadyz(t, n, func(code int, body string) bool { return code == http.StatusOK && body == "ready\n" })
}

// untilReadyz polls n's /readyz until ok says yes to its answer, for
// 30 s, and returns how long it took: polled, readiness has no event to
// wait on.
func untilReadyz(t *testing.T, n *node, ok func(code int, body string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, body := readyz(t, n)
		if ok(code, body) {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s still %d %q after 30 s", n.name, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestReadyz: /readyz is 200 on every node of a whole cluster, once its
// JetStream has settled (at the cluster's start a node's API may answer
// "no responders" for a moment, the bucket's leader just elected); once
// both peers of n1 are killed JetStream has no quorum, and n1's /readyz
// says 503 with the reason while /healthz (the process lives) stays 200;
// the peers back restore the quorum and n1 is ready again.
func TestReadyz(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	for _, n := range nodes {
		if d := untilReady(t, n); d > 0 {
			t.Logf("%s ready %v after it served", n.name, d.Round(time.Millisecond))
		}
	}
	nodes[1].stop(t, syscall.SIGKILL)
	nodes[2].stop(t, syscall.SIGKILL)
	// The bucket's leader may have been n1: then its reads answer until
	// it learns it lost its quorum. Polled: there is no event to wait on.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := readyz(t, nodes[0])
		if code == http.StatusServiceUnavailable {
			// Past a lease TTL with no peer answering, n1 is cut off
			// (docs/cluster.md "Network partitions"), which it says.
			if !strings.HasPrefix(body, "not ready: jetstream: ") && body != "not ready: cut off from the cluster\n" {
				t.Fatalf("503 with %q", body)
			}
			t.Logf("peers gone: %d %q", code, body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 still %d %q with its peers gone", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resp, err := http.Get("http://" + nodes[0].addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	// Both peers back, started together as at the cluster's start (a
	// JetStream meta group that lost two of three peers may wait on
	// both to elect).
	nodes[1].launch(t)
	nodes[2].launch(t)
	nodes[1].waitUp(t)
	nodes[2].waitUp(t)
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("n1 ready %v after its peers came back", untilReady(t, nodes[0]).Round(time.Millisecond))
}
