package cluster

import (
	"encoding/json"
	"maps"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
)

// status reads n's /cluster/status from its metrics listener.
func status(t *testing.T, n *node) cluster.Status {
	t.Helper()
	resp, err := http.Get("http://" + n.metrics + "/cluster/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st cluster.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d: %v", resp.StatusCode, err)
	}
	return st
}

// summary is a status as name -> "up/sessions".
func summary(st cluster.Status) map[string]string {
	out := map[string]string{}
	for _, n := range st.Nodes {
		up := "down"
		if n.Up {
			up = "up"
		}
		out[n.Name] = up + "/" + string(rune('0'+n.Sessions))
	}
	return out
}

// untilStatus polls n's status until its summary is want (the view
// follows a watch and leases read every third of the TTL: no event
// reaches the test).
func untilStatus(t *testing.T, n *node, want map[string]string) cluster.Status {
	t.Helper()
	st, _ := untilStatusIn(t, n, 30*time.Second, want)
	return st
}

// untilStatusOneOf is untilStatus for any of wants, for up to within;
// it returns the one met.
func untilStatusOneOf(t *testing.T, n *node, within time.Duration, wants ...map[string]string) map[string]string {
	t.Helper()
	_, met := untilStatusIn(t, n, within, wants...)
	return met
}

func untilStatusIn(t *testing.T, n *node, within time.Duration, wants ...map[string]string) (cluster.Status, map[string]string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := status(t, n)
		got := summary(st)
		for _, want := range wants {
			if maps.Equal(got, want) {
				return st, want
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %v, want one of %v", n.name, got, wants)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterStatus: /cluster/status on a node's metrics listener lists
// the three nodes with their leases and the sessions each owns; a node
// killed shows down, its sessions still named until they move.
func TestClusterStatus(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	dial(t, "alice@example.com", urls(nodes, 0)[:1], nil)
	dial(t, "bob@example.com", urls(nodes, 0)[:1], nil)
	dial(t, "carol@example.com", urls(nodes, 2)[:1], nil)
	st := untilStatus(t, nodes[1], map[string]string{"n1": "up/2", "n2": "up/0", "n3": "up/1"})
	if st.Node != "n2" || st.LeaseTTL != "4s" {
		t.Fatalf("status %+v", st)
	}
	for _, n := range st.Nodes {
		if n.Lease.IsZero() || time.Since(n.Lease) > time.Minute {
			t.Fatalf("%s: lease %v", n.Name, n.Lease)
		}
	}
	// jsonrtcd cluster status reads the same from the node's file.
	out, err := exec.Command(bin, "cluster", "status", "-config", nodes[1].config).CombinedOutput()
	if err != nil {
		t.Fatalf("jsonrtcd cluster status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 5 || lines[0] != "node n2 (lease ttl 4s)" || !strings.HasPrefix(lines[2], "n1 ") || !strings.HasSuffix(lines[2], " 2") ||
		!strings.HasSuffix(lines[4], " 1") || strings.Fields(lines[3])[1] != "yes" {
		t.Fatalf("jsonrtcd cluster status printed:\n%s", out)
	}
	t.Logf("jsonrtcd cluster status:\n%s", out)
	nodes[2].stop(t, syscall.SIGKILL)
	untilStatus(t, nodes[0], map[string]string{"n1": "up/2", "n2": "up/0", "n3": "down/1"})
}
