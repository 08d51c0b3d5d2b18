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

// TestReadyz: /readyz is 200 on every node of a whole cluster; once both
// peers of n1 are killed JetStream has no quorum, and n1's /readyz says
// 503 with the reason while /healthz (the process lives) stays 200; the
// peers back restore the quorum and n1 is ready again.
func TestReadyz(t *testing.T) {
	nodes := newCluster(t)
	for _, n := range nodes {
		if code, body := readyz(t, n); code != http.StatusOK || body != "ready\n" {
			t.Fatalf("%s: %d %q", n.name, code, body)
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
			if !strings.HasPrefix(body, "not ready: jetstream: ") {
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
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body := readyz(t, nodes[0])
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 still %d %q with a peer back", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
