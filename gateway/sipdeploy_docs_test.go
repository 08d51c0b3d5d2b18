package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The node configurations of docs/cluster.md, "SIP deployments", load
// (every key known and valid), and deployment (b)'s node goes through
// the balancer of kamailio.cfg next to it, which dispatches to the
// node's SIP address (dispatcher.list); internal/kamailio checks those
// two are the balancer the tests run.
func TestDocsSIPDeploymentExamples(t *testing.T) {
	dir := filepath.Join("..", "docs", "examples")
	if _, err := LoadConfig(filepath.Join(dir, "sip-own-address", "jsonrtcd.yaml")); err != nil {
		t.Errorf("deployment (a): %v", err)
	}
	cfg, err := LoadConfig(filepath.Join(dir, "sip-balancer", "jsonrtcd.yaml"))
	if err != nil {
		t.Fatalf("deployment (b): %v", err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, "sip-balancer", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	lb := strings.TrimPrefix(cfg.SIP.OutboundProxy, "sip:")
	host, _, _ := strings.Cut(lb, ":")
	if !strings.Contains(read("kamailio.cfg"), "listen=udp:"+lb+"\n") || len(cfg.SIP.Balancers) != 1 || cfg.SIP.Balancers[0] != host {
		t.Errorf("the node's outbound proxy %s and balancers %v are not the balancer's address", cfg.SIP.OutboundProxy, cfg.SIP.Balancers)
	}
	if !strings.Contains(read("dispatcher.list"), "sip:"+cfg.SIP.Listen.UDP+" ") {
		t.Errorf("the node's SIP address %s is not in the dispatcher list", cfg.SIP.Listen.UDP)
	}
}
