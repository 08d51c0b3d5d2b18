package kamailio

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

var update = flag.Bool("update", false, "write docs/examples/sip-balancer from the templates")

// The balancer of docs/examples/sip-balancer: three nodes on
// 10.0.0.11-13, the SIP network's registrar/proxy at 10.0.1.10.
var (
	exampleDir     = filepath.Join("..", "..", "docs", "examples", "sip-balancer")
	exampleOptions = BalancerOptions{Listen: "10.0.0.5:5060", ModPath: "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
		ListFile: "/etc/kamailio/dispatcher.list", Upstream: "10.0.1.10:5060", Probe: 2, FailoverMS: 2000, Workers: 8}
	exampleNodes = []string{"10.0.0.11:5060", "10.0.0.12:5060", "10.0.0.13:5060"}
)

// TestBalancerExample: the example files of docs/cluster.md ("SIP
// deployments") are what the templates the tests run make (go test
// -run TestBalancerExample -update ./internal/kamailio/ writes them).
func TestBalancerExample(t *testing.T) {
	cfg, err := BalancerConfig(exampleOptions)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"kamailio.cfg": cfg, "dispatcher.list": BalancerList(exampleNodes)} {
		path := filepath.Join(exampleDir, name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the template's output: run with -update", path)
		}
	}
}

// TestBalancerConfigParses: Kamailio takes the balancer's configuration
// (kamailio -c: syntax, modules and their parameters), on a local
// address with a list file that exists.
func TestBalancerConfigParses(t *testing.T) {
	testenv.Tool(t, "kamailio", "apt-get install kamailio")
	dir := t.TempDir()
	o := exampleOptions
	o.Listen, o.ModPath, o.ListFile, o.Workers = "127.0.0.1:5060", ModulesDir(), filepath.Join(dir, "dispatcher.list"), 1
	if err := os.WriteFile(o.ListFile, BalancerList([]string{"127.0.0.1:5071"}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, log := range []bool{false, true} {
		o.LogRequests, o.MatchPort = log, log
		cfg, err := BalancerConfig(o)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "kamailio.cfg")
		if err := os.WriteFile(path, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("kamailio", "-c", "-f", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "config file ok") {
			t.Fatalf("kamailio -c (log %v): %v\n%s", log, err, out)
		}
	}
}
