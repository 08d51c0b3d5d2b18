package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/internal/natstest"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// TestClusterDocModes: the route TLS, external NATS and leaf node
// configurations of docs/cluster.md load as written (their files, under
// /etc/jsonrtc there, made by the test), each in its mode.
func TestClusterDocModes(t *testing.T) {
	pki := natstest.NewPKI(t)
	dir := filepath.Dir(pki.CA)
	if err := os.WriteFile(filepath.Join(dir, "jsonrtc.creds"), []byte("creds"), 0o600); err != nil {
		t.Fatal(err)
	}
	blocks := testenv.FencedBlocks(t, "../docs/cluster.md", "yaml")
	find := func(marker string) string {
		t.Helper()
		for _, b := range blocks {
			if strings.Contains(b, marker) {
				return strings.ReplaceAll(b, "/etc/jsonrtc", dir)
			}
		}
		t.Fatalf("docs/cluster.md has no yaml block with %q", marker)
		return ""
	}
	// The route TLS block adds to the three-node one.
	_, tlsLines, _ := strings.Cut(find("verify: true"), "as above\n")
	routed := strings.Replace(find("routes: [10.0.0.1:6222"), "/var/lib/jsonrtc", t.TempDir(), 1) + tlsLines
	for _, c := range []struct {
		name, body string
		mode       cluster.Mode
		check      func(c cluster.Config) bool
	}{
		{"route TLS", routed, cluster.ModeRoutes, func(c cluster.Config) bool {
			return c.TLS.Cert != "" && *c.TLS.Verify && c.User == "route"
		}},
		{"external", find("nats:\n    urls:"), cluster.ModeNATS, func(c cluster.Config) bool {
			return len(c.NATS.URLs) == 3 && c.NATS.Creds != "" && c.NATS.TLS.ServerName == "nats.example.net"
		}},
		{"leaf", find("leaf:\n    urls:"), cluster.ModeLeaf, func(c cluster.Config) bool {
			return len(c.Leaf.URLs) == 3 && c.Leaf.User == "edge" && c.Leaf.Domain == "hub"
		}},
	} {
		cfg, err := LoadConfig(writeConfig(t, c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if cfg.Cluster.Mode() != c.mode || !c.check(cfg.Cluster) {
			t.Errorf("%s: cluster section %+v", c.name, cfg.Cluster)
		}
	}
	// Two ways at once fail naming both keys.
	_, err := LoadConfig(writeConfig(t, routed+"  nats: {urls: [127.0.0.1:4222]}\n"))
	if err == nil || !strings.Contains(err.Error(), "cluster.routes") || !strings.Contains(err.Error(), "cluster.nats.urls") {
		t.Fatalf("routes and nats.urls: %v", err)
	}
}
