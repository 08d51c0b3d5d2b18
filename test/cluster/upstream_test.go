package cluster

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/natstest"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// upstreamNodes writes the configuration of two jsonrtcd nodes whose
// cluster section is section (given the node's name: the lines under
// "cluster:" after its name), starts them and waits until each sees the
// other.
func upstreamNodes(t *testing.T, section func(name string) string) []*node {
	t.Helper()
	if testing.Short() {
		t.Skip("runs two jsonrtcd processes")
	}
	dir := t.TempDir()
	nodes := make([]*node, 2)
	for i := range nodes {
		n := &node{name: fmt.Sprintf("g%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("g%d", i+1))}
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
