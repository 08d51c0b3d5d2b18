package cluster

import (
	"encoding/json"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/gateway"
)

// status reads n's /cluster/status from its metrics listener.
func status(t *testing.T, n *node) cluster.Status {
	t.Helper()
	var st cluster.Status
	getStatus(t, n, "", &st)
	return st
}

// everyView reads n's /cluster/status?all: every node's view, gathered
// by n.
func everyView(t *testing.T, n *node) gateway.ClusterView {
	t.Helper()
	var cv gateway.ClusterView
	getStatus(t, n, "?all", &cv)
	return cv
}

// getStatus decodes n's /cluster/status with query into v.
func getStatus(t *testing.T, n *node, query string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + n.metrics + "/cluster/status" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d: %v", resp.StatusCode, err)
	}
}

// held summarises a gathered view as node -> its sessions held, or its
// error.
func held(cv gateway.ClusterView) map[string]string {
	out := map[string]string{}
	for _, v := range append([]gateway.NodeView{cv.NodeView}, cv.Peers...) {
		if v.Error != "" {
			out[v.Node] = "no view"
		} else {
			out[v.Node] = strconv.Itoa(v.Held)
		}
	}
	return out
}

// untilViewsAgree polls n's gathered view until the views agree and
// held is want (the directory follows a watch, leases are read every
// third of the TTL: no event reaches the test). A disagreement on the
// way must be one of may.
func untilViewsAgree(t *testing.T, n *node, want map[string]string, may ...string) gateway.ClusterView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cv := everyView(t, n)
		for _, d := range cv.Disagree {
			if !slices.Contains(may, d) {
				t.Fatalf("%s: views disagree: %q", n.name, cv.Disagree)
			}
		}
		if len(cv.Disagree) == 0 && maps.Equal(held(cv), want) {
			return cv
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: held %v, disagreeing %q; want %v, agreeing", n.name, held(cv), cv.Disagree, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
// killed shows down, its sessions still named until they move. With
// ?all (jsonrtcd cluster status -all) the node gathers every node's
// view with the sessions each holds, and they agree; the killed node
// gives none, and, seen up while its lease runs, is a disagreement
// (exit status 1) until every view has it down.
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
	if len(lines) != 5 || lines[0] != "node n2 (lease ttl 4s): 0 sessions held, 0 calls hosted" || !strings.HasPrefix(lines[2], "n1 ") || !strings.HasSuffix(lines[2], " 2") ||
		!strings.HasSuffix(lines[4], " 1") || strings.Fields(lines[3])[1] != "yes" {
		t.Fatalf("jsonrtcd cluster status printed:\n%s", out)
	}
	t.Logf("jsonrtcd cluster status:\n%s", out)

	cv := untilViewsAgree(t, nodes[1], map[string]string{"n1": "2", "n2": "0", "n3": "1"})
	if cv.Node != "n2" || len(cv.Peers) != 2 || cv.Peers[0].Node != "n1" || cv.Peers[1].Node != "n3" {
		t.Fatalf("gathered views %+v", cv)
	}
	for _, v := range cv.Peers {
		if len(v.Nodes) != 3 || v.LeaseTTL != "4s" || v.Draining || v.CutOff {
			t.Fatalf("%s's view: %+v", v.Node, v)
		}
	}
	// The same view as metrics, for an alert on a node down.
	if got, want := metricSeries(nodes[1:2], "jsonrtc_cluster_directory_sessions"), map[string]float64{`node="n1"`: 2, `node="n2"`: 0, `node="n3"`: 1}; !maps.Equal(got, want) {
		t.Fatalf("n2's jsonrtc_cluster_directory_sessions: %v, want %v", got, want)
	}
	if got, want := metricSeries(nodes[1:2], "jsonrtc_cluster_node_up"), map[string]float64{`node="n1"`: 1, `node="n2"`: 1, `node="n3"`: 1}; !maps.Equal(got, want) {
		t.Fatalf("n2's jsonrtc_cluster_node_up: %v, want %v", got, want)
	}
	out, err = exec.Command(bin, "cluster", "status", "-all", "-config", nodes[1].config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "node n1 (lease ttl 4s): 2 sessions held, 0 calls hosted\n") ||
		!strings.Contains(string(out), "node n3 (lease ttl 4s): 1 sessions held") || !strings.HasSuffix(string(out), "\n3 views agree\n") {
		t.Fatalf("jsonrtcd cluster status -all: %v\n%s", err, out)
	}
	t.Logf("jsonrtcd cluster status -all:\n%s", out)

	nodes[2].stop(t, syscall.SIGKILL)
	// While its lease runs n3 is up for both others, and silent.
	silent := "n3: seen up by n1, n2, gave no view of its own"
	out, err = exec.Command(bin, "cluster", "status", "-all", "-config", nodes[0].config).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "\nviews disagree:\n  "+silent+"\n") {
		t.Fatalf("jsonrtcd cluster status -all, n3 killed: %v\n%s", err, out)
	}
	t.Logf("jsonrtcd cluster status -all, n3 just killed (%v):\n%s", err, out)
	untilStatus(t, nodes[0], map[string]string{"n1": "up/2", "n2": "up/0", "n3": "down/1"})
	cv = untilViewsAgree(t, nodes[0], map[string]string{"n1": "2", "n2": "0", "n3": "no view"}, silent, "n3: seen up by n2, down by n1")
	if e := cv.Peers[1].Error; !strings.Contains(e, "not reachable") {
		t.Fatalf("n3 killed: its view's error %q", e)
	}
	if got, want := metricSeries(nodes[:1], "jsonrtc_cluster_node_up"), map[string]float64{`node="n1"`: 1, `node="n2"`: 1, `node="n3"`: 0}; !maps.Equal(got, want) {
		t.Fatalf("n3 killed: n1's jsonrtc_cluster_node_up: %v, want %v", got, want)
	}
}
