// Package cluster runs three real jsonrtcd processes on loopback, their
// embedded NATS servers joined through routes with JetStream replicas 3
// (docs/cluster.md), and the Go client against them.
//
// Most tests run in parallel (t.Parallel): each has its own ports
// (testenv.Port), data directories, Kamailio, SIPp and rtpengine, and
// spends most of its time waiting on leases, timers and peers, which
// another test's processes fill. Some stay serial, and so run alone
// before the parallel ones: the TestClusterPartition tests (network
// namespaces, nftables, fixed ports); TestExternalNATS and TestLeafNATS, whose NATS
// servers run in the test's own process, which the parallel tests keep
// busy; and the three that load the machine most or time a lease most
// closely, TestCallsSurviveTheirHost (100 calls), TestDrainDuringSIPCalls
// (50 SIP calls) and TestRollingRestart (issue 13). scripts/test sets
// -parallel.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// bin is jsonrtcd, built once per run (TestMain).
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jsonrtc-cluster")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "jsonrtcd")
	args := []string{"build", "-o", bin}
	// JSONRTC_NODES_RACE: the nodes under the race detector, the test's
	// own process not (scripts/test): what is under test is jsonrtcd,
	// and the NATS servers some tests run in their own process
	// (internal/natstest: an external cluster, a leaf hub) were several
	// times slower under it, too slow on a loaded machine to write a
	// lease in time.
	if raceEnabled || os.Getenv("JSONRTC_NODES_RACE") == "1" {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, "github.com/jsonrtc/jsonrtc/cmd/jsonrtcd")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build jsonrtcd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one jsonrtcd of the cluster, started and stopped at will on
// its own addresses and data directory, in network namespace netns if
// set (partition_test.go).
type node struct {
	name, addr, route, metrics, dir, config, log string
	netns                                        string
	pprof                                        string // -pprof address (profileEnv, or set before the start)
	// lease is the node's cluster.lease_ttl; zero: defaultLease.
	lease  time.Duration
	cmd    *exec.Cmd
	exited chan struct{}
}

// ws is the node's WebSocket URL of the open test application.
func (n *node) ws() string { return "ws://" + n.addr + "/ws/webrtc/test" }

// newCluster writes the configuration of three nodes and starts them
// all (a clustered JetStream needs a quorum to start).
func newCluster(t testing.TB) []*node {
	t.Helper()
	return newClusterWith(t, "")
}

// newClusterWith is newCluster with extra lines in each node's cluster
// section (route TLS, say), where {node} stands for the node's name.
func newClusterWith(t testing.TB, extra string) []*node {
	t.Helper()
	if testing.Short() {
		t.Skip("runs three jsonrtcd processes")
	}
	return startCluster(t, newNodes(t, 3, func(int) string { return "127.0.0.1" }, func() int { return testenv.Port(t) }), extra)
}

// newNodes names n nodes, node i on address host(i) and ports port().
func newNodes(t testing.TB, n int, host func(i int) string, port func() int) []*node {
	dir := t.TempDir()
	nodes := make([]*node, n)
	for i := range nodes {
		n := &node{name: fmt.Sprintf("n%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		n.addr = fmt.Sprintf("%s:%d", host(i), port())
		n.route = fmt.Sprintf("%s:%d", host(i), port())
		n.metrics = fmt.Sprintf("%s:%d", host(i), port())
		n.config, n.log = n.dir+".yaml", n.dir+".log"
		nodes[i] = n
	}
	return nodes
}

// startCluster writes the nodes' configuration, with extra lines in
// their cluster section as newClusterWith's, and starts them all,
// waiting until each sees the others.
func startCluster(t testing.TB, nodes []*node, extra string) []*node {
	t.Helper()
	var routes []string
	for _, n := range nodes {
		routes = append(routes, n.route)
	}
	for _, n := range nodes {
		n.writeConfig(t, fmt.Sprintf("  listen: %s\n  routes: [%s]\n", n.route, strings.Join(routes, ", "))+strings.ReplaceAll(extra, "{node}", n.name))
	}
	runNodes(t, nodes)
	return nodes
}

// defaultLease is the nodes' cluster.lease_ttl unless node.lease says
// otherwise: short, so that a node's death is noticed soon.
const defaultLease = 4 * time.Second

// writeConfig writes the node's configuration: its addresses, its lease,
// and a cluster section of replicas 3 whose other lines are section's.
func (n *node) writeConfig(t testing.TB, section string) {
	t.Helper()
	lease := n.lease
	if lease == 0 {
		lease = defaultLease
	}
	cfg := fmt.Sprintf(`listen: %s
metrics: {listen: %s}
store: {dir: %s}
session: {resume_timeout: 30s}
cluster:
  name: %s
  replicas: 3
  lease_ttl: %s
  drain_timeout: 20s
%s`, n.addr, n.metrics, n.dir, n.name, lease, section)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runNodes starts the nodes, their configuration written, and waits
// until each serves and sees all of them; they are killed (their logs
// shown if t failed) at the test's end.
func runNodes(t testing.TB, nodes []*node) {
	t.Helper()
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop(t, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, n := range nodes {
				out, _ := os.ReadFile(n.log)
				t.Logf("%s log:\n%s", n.name, out)
			}
		}
	})
	startNodes(t, nodes)
	for _, n := range nodes {
		n.waitPeers(t, len(nodes))
	}
}

// starting holds a slot of each cluster starting: two at most. A start
// is the busiest time of a test's processes (the race detector's start,
// JetStream's elections), and the parallel tests' starts piled up on a
// loaded 2-core machine starved a node past the NATS client's 2 s to
// read its own in-process server's INFO ("natsstore: read pipe: i/o
// timeout"); their waits, not their starts, are what runs in parallel.
var starting = make(chan struct{}, 2)

// startNodes launches the nodes and waits until each serves, in a slot
// of starting.
func startNodes(t testing.TB, nodes []*node) {
	t.Helper()
	starting <- struct{}{}
	defer func() { <-starting }()
	var wg sync.WaitGroup
	for _, n := range nodes {
		n.launch(t)
	}
	for _, n := range nodes {
		wg.Go(func() { n.waitUp(t) })
	}
	wg.Wait()
}

// waitPeers waits until n sees all nodes of the cluster up: served
// (/healthz) is not formed, and a node that has not read a peer's lease
// yet takes the peer's sessions, then in the directory, for absent (a
// call to one answered 404 at the cluster's start; docs/cluster.md
// "Known defects"). Polled: the view follows leases read every third of
// the TTL, which no event tells the test of.
func (n *node) waitPeers(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		up := 0
		if resp, err := http.Get("http://" + n.metrics + "/cluster/status"); err == nil {
			var st cluster.Status
			if json.NewDecoder(resp.Body).Decode(&st) == nil {
				for _, p := range st.Nodes {
					if p.Up {
						up++
					}
				}
			}
			resp.Body.Close()
		}
		if up == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s sees %d of %d nodes up", n.name, up, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *node) launch(t testing.TB) {
	t.Helper()
	lf, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "--- start\n")
	n.cmd = exec.Command(bin, "-config", n.config)
	if (os.Getenv(profileEnv) != "" || n.pprof != "") && n.netns == "" {
		if n.pprof == "" {
			n.pprof = fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
		}
		n.cmd.Args = append(n.cmd.Args, "-pprof", n.pprof)
	}
	if n.netns != "" {
		// ip netns exec execs jsonrtcd: the signals reach it. The open
		// test application off loopback needs -insecure-open: the lab's
		// network is the test's own.
		n.cmd = exec.Command("ip", "netns", "exec", n.netns, bin, "-config", n.config, "-insecure-open")
	}
	n.cmd.Stderr = lf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan struct{})
	cmd, exited := n.cmd, n.exited
	go func() { cmd.Wait(); close(exited) }()
}

// waitUp waits for the node to serve (its JetStream ready): polled, a
// process start-up has no event to wait on.
func (n *node) waitUp(t testing.TB) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + n.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-n.exited:
			t.Errorf("%s exited at start-up", n.name)
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Errorf("%s did not come up: %v", n.name, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start starts a stopped node again and waits for it.
func (n *node) start(t *testing.T) {
	t.Helper()
	n.launch(t)
	n.waitUp(t)
	if t.Failed() {
		t.FailNow()
	}
}

// stop signals the node and waits for it to exit.
func (n *node) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if n.cmd == nil {
		return
	}
	n.signal(sig)
	n.wait(t, sig)
}

func (n *node) signal(sig syscall.Signal) { n.cmd.Process.Signal(sig) }

// wait waits for the node, signalled with sig, to exit.
func (n *node) wait(t testing.TB, sig syscall.Signal) {
	t.Helper()
	// A drain takes up to drain_timeout (20 s) and then shuts down: on
	// a loaded machine, with every node stopping at once
	// (TestClusterStopAll), more than 30 s.
	bound := 30 * time.Second
	if sig == syscall.SIGTERM {
		bound = time.Minute
	}
	select {
	case <-n.exited:
	case <-time.After(bound):
		n.cmd.Process.Kill()
		<-n.exited
		t.Errorf("%s did not exit after %v", n.name, sig)
	}
	if sig == syscall.SIGTERM && n.cmd.ProcessState != nil && !n.cmd.ProcessState.Success() {
		t.Errorf("%s exited with %v after SIGTERM", n.name, n.cmd.ProcessState)
	}
	n.cmd = nil
}

// dial connects identity through urls (the first, then each in turn at
// every reconnect).
func dial(t testing.TB, identity string, urls []string, mod func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{URLs: urls, Identity: identity, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	c, err := client.Dial(tctx(t), o)
	if err != nil {
		t.Fatalf("dial %s: %v", identity, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// urls lists the nodes' URLs starting at nodes[first].
func urls(nodes []*node, first int) []string {
	var out []string
	for i := range nodes {
		out = append(out, nodes[(first+i)%len(nodes)].ws())
	}
	return out
}

func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

// event returns c's next event of kind k, within 15 s.
func event(t testing.TB, c *client.Client, k client.EventKind) client.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok || ev.Kind == client.EventClosed {
				t.Fatalf("%s: closed waiting for %s", c.Identity(), k)
			}
			if ev.Kind == k {
				return ev
			}
		case <-timeout:
			t.Fatalf("%s: no %s event", c.Identity(), k)
		}
	}
}

// incoming waits for b's incoming call from a; a call event at a first
// (the call failed: an unknown target, a node not answering) fails the
// test with its code, rather than a silent wait.
func incoming(t testing.TB, a, b *client.Client) client.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-b.Events():
			if !ok || ev.Kind == client.EventClosed {
				t.Fatalf("%s: closed waiting for the call", b.Identity())
			}
			if ev.Kind == client.EventIncomingCall {
				return ev
			}
		case ev, ok := <-a.Events():
			if !ok || ev.Kind == client.EventClosed {
				t.Fatalf("%s: closed while calling", a.Identity())
			}
			if ev.Kind == client.EventCall {
				t.Fatalf("%s: call event %v (%d %s) before %s heard of the call", a.Identity(), ev.CallEvent, ev.Code, ev.Reason, b.Identity())
			}
		case <-timeout:
			t.Fatalf("%s: no incoming call within 15 s", b.Identity())
		}
	}
}

// callEvent returns c's next call event, which must be want.
func callEvent(t testing.TB, c *client.Client, want client.CallEvent) client.Event {
	t.Helper()
	ev := event(t, c, client.EventCall)
	if ev.CallEvent != want {
		t.Fatalf("%s: call event %v (%d %s), want %v", c.Identity(), ev.CallEvent, ev.Code, ev.Reason, want)
	}
	return ev
}
