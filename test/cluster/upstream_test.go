package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/natstest"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// upstreamNodes writes the configuration of two jsonrtcd nodes whose
// cluster section is section (given the node's name: the lines under
// "cluster:" after its name), starts them and waits until each sees the
// other. Their lease TTL (node.lease) is 12 s, not defaultLease's 4:
// the NATS servers they use run in the test's process, under its race
// detector, and on a loaded machine their JetStream took over a third
// of 4 s to write a lease (the leaf hops add to it): the nodes took
// themselves for cut off and closed their sockets, time after time. No
// node dies in these tests, so the longer TTL costs them nothing.
func upstreamNodes(t *testing.T, section func(name string) string) []*node {
	t.Helper()
	if testing.Short() {
		t.Skip("runs two jsonrtcd processes")
	}
	dir := t.TempDir()
	nodes := make([]*node, 2)
	for i := range nodes {
		n := &node{name: fmt.Sprintf("g%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("g%d", i+1)), lease: 12 * time.Second}
		n.addr = fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
		n.metrics = fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
		n.config, n.log = n.dir+".yaml", n.dir+".log"
		n.writeConfig(t, section(n.name))
		nodes[i] = n
	}
	runNodes(t, nodes)
	return nodes
}

// acrossAndResume: a message and a call from a session on one node to
// one on the other, then the callee's socket killed: its client resumes
// the same session on the first node (a takeover), the call goes on and
// ends with shutdown on both sides, and messages reach it there.
func acrossAndResume(t *testing.T, nodes []*node) {
	t.Helper()
	alice := dial(t, "alice@example.com", urls(nodes, 0)[:1], func(o *client.Options) { o.AutoAcceptMessages = true })
	bob := dial(t, "bob@example.com", urls(nodes, 1), func(o *client.Options) { o.AutoAcceptMessages = true })
	if code, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "hi bob"); err != nil || code != 200 {
		t.Fatalf("alice (%s) to bob (%s): %d, %v", nodes[0].name, nodes[1].name, code, err)
	}
	if ev := event(t, bob, client.EventMessage); ev.Message.Body != "hi bob" {
		t.Fatalf("bob got %+v", ev.Message)
	}
	out, _ := call(t, alice, bob)
	id := bob.SessionID()
	bob.Kill()
	event(t, bob, client.EventResumed)
	if bob.SessionID() != id {
		t.Fatalf("bob's session %s became %s: not resumed", id, bob.SessionID())
	}
	if code, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "after"); err != nil || code != 200 {
		t.Fatalf("alice to bob resumed on %s: %d, %v", nodes[0].name, code, err)
	}
	if ev := event(t, bob, client.EventMessage); ev.Message.Body != "after" {
		t.Fatalf("bob got %+v after his resume", ev.Message)
	}
	if err := out.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	callEvent(t, bob, client.CallEnded)
}

// TestExternalNATS: two jsonrtcd on an external NATS cluster of three
// servers (cluster.nats: TLS with the test's CA, a user and password,
// replicas 3), running no NATS server of their own: messages and calls
// cross between them and a session resumes on the other.
//
// Serial (harness_test.go): its NATS servers run in the test's process.
func TestExternalNATS(t *testing.T) {
	pki := natstest.NewPKI(t)
	ext := natstest.Cluster(t, 3, natstest.Options{TLS: pki.ServerTLS(t), User: "gw", Password: "secret"})
	var list []string
	for _, s := range ext {
		list = append(list, "tls://"+s.ClientURL())
	}
	nodes := upstreamNodes(t, func(string) string {
		return fmt.Sprintf("  nats:\n    urls: [%s]\n    user: gw\n    password: secret\n    tls: {ca: %s}\n",
			strings.Join(list, ", "), pki.CA)
	})
	acrossAndResume(t, nodes)
}

// TestLeafNATS: two jsonrtcd whose embedded servers are leaf nodes
// (cluster.leaf: TLS, a password, the hub's JetStream domain) of a hub
// of three servers: the same as on an external cluster.
//
// Serial (harness_test.go): its NATS servers run in the test's process.
func TestLeafNATS(t *testing.T) {
	pki := natstest.NewPKI(t)
	hub := natstest.Cluster(t, 3, natstest.Options{TLS: pki.ServerTLS(t), User: "leaf", Password: "secret", Domain: "hub", Leaf: true})
	nodes := upstreamNodes(t, func(name string) string {
		// Each gateway's leaf connection goes to another hub server.
		i := map[string]int{"g1": 0, "g2": 1}[name]
		return fmt.Sprintf("  leaf:\n    urls: [tls://%s, tls://%s]\n    user: leaf\n    password: secret\n    tls: {ca: %s}\n    domain: hub\n",
			hub[i].LeafURL(), hub[2].LeafURL(), pki.CA)
	})
	acrossAndResume(t, nodes)
}

// TestRouteTLSNodes: three jsonrtcd whose routes need mutual TLS (each
// node its own certificate of one CA) and a password form the cluster:
// a message crosses it. A node whose cluster.tls.ca does not sign its
// own certificate fails at start, naming the key.
func TestRouteTLSNodes(t *testing.T) {
	t.Parallel()
	pki := natstest.NewPKI(t)
	// Each node its own pair, <dir>/<node>.pem and <node>-key.pem.
	for i := range 3 {
		pki.Issue(t, fmt.Sprintf("n%d", i+1))
	}
	dir := filepath.Dir(pki.CA)
	nodes := newClusterWith(t, fmt.Sprintf("  tls: {ca: %s, cert: %s/{node}.pem, key: %s/{node}-key.pem}\n  user: route\n  password: secret\n", pki.CA, dir, dir))
	alice := dial(t, "alice@example.com", urls(nodes, 0)[:1], nil)
	bob := dial(t, "bob@example.com", urls(nodes, 2)[:1], func(o *client.Options) { o.AutoAcceptMessages = true })
	if code, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "over tls"); err != nil || code != 200 {
		t.Fatalf("alice (n1) to bob (n3): %d, %v", code, err)
	}
	if ev := event(t, bob, client.EventMessage); ev.Message.Body != "over tls" {
		t.Fatalf("bob got %+v", ev.Message)
	}

	other := natstest.NewPKI(t)
	cfg := strings.Replace(readFile(t, nodes[0].config), pki.CA, other.CA, 1)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-config", bad, "-t").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cluster.tls.ca: does not verify cluster.tls.cert") {
		t.Fatalf("a CA that does not sign the node's certificate: %v\n%s", err, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
