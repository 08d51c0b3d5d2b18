package gateway

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestClusterDocConfig: the three-node configuration of docs/cluster.md
// loads as written, for each node.
func TestClusterDocConfig(t *testing.T) {
	doc, err := os.ReadFile("../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/cluster.md has no yaml block")
	}
	for i, host := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		name := []string{"n1", "n2", "n3"}[i]
		body := strings.Replace(block, "listen: 10.0.0.1:8080", "listen: "+host+":8080", 1)
		body = strings.Replace(body, "name: n1 ", "name: "+name+" ", 1)
		body = strings.Replace(body, "listen: 10.0.0.1:6222", "listen: "+host+":6222", 1)
		cfg, err := LoadConfig(writeConfig(t, body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := cfg.Cluster
		if c.Name != name || c.Listen != host+":6222" || len(c.Routes) != 3 || c.Replicas != 3 ||
			c.LeaseTTL != 6*time.Second || c.DrainTimeout != 2*time.Minute || cfg.Listen != host+":8080" {
			t.Fatalf("%s: cluster section %+v, listen %s", name, c, cfg.Listen)
		}
	}
}

// TestClusterConfigErrors: bad cluster keys fail, each named.
func TestClusterConfigErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"cluster:\n  name: n1\n  listen: 127.0.0.1:6222\n  routes: [127.0.0.1:6222]\n  replicas: 2\n", "cluster.replicas: 2 is not 1 or 3"},
		{"cluster:\n  name: n1\n  listen: 127.0.0.1:6222\n  routes: [127.0.0.1:6222, x]\n", `cluster.routes[1]: "x" is not host:port`},
		{"cluster:\n  name: n.1\n  listen: 127.0.0.1:6222\n  routes: [127.0.0.1:6222]\n", "cluster.name:"},
		{"cluster:\n  name: n1\n  listen: nowhere\n  routes: [127.0.0.1:6222]\n", "cluster.listen:"},
		{"cluster:\n  name: n1\n  listen: 127.0.0.1:6222\n", "cluster.routes: must list"},
		{"cluster:\n  name: n1\n  listen: 127.0.0.1:6222\n  routes: [127.0.0.1:6222]\n  lease_ttl: 100ms\n", "cluster.lease_ttl: must be at least 1s"},
		{"cluster:\n  listen: 127.0.0.1:6222\n", "cluster.name: must be set"},
		{"store: {backend: memory}\ncluster:\n  name: n1\n  listen: 127.0.0.1:6222\n  routes: [127.0.0.1:6222]\n", "store.backend: must be nats"},
		{"cluster:\n  name: n1\n  nodes: 3\n", "field nodes not found"},
	} {
		_, err := LoadConfig(writeConfig(t, c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.body, err, c.want)
		}
	}
	// No cluster section: the gateway runs alone, as before.
	if cfg := DefaultConfig(); cfg.Cluster.Enabled() {
		t.Fatal("the default configuration is a cluster")
	}
}
