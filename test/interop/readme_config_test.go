package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// readmeSIPExample returns the README's example sip section: the ```yaml
// block with a top-level sip: key, read from README.md itself so that the
// example and this test cannot drift apart.
func readmeSIPExample(t *testing.T) string {
	t.Helper()
	var found []string
	for _, b := range testenv.FencedBlocks(t, filepath.Join("..", "..", "README.md"), "yaml") {
		if strings.Contains("\n"+b, "\nsip:") {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md has %d yaml blocks with a sip: section, want 1", len(found))
	}
	return found[0]
}

// TestReadmeSIPExample runs the README's sip example verbatim but for
// its addresses, which must point at this test's peers: the listeners
// move to port 0 and the outbound proxy to the test Kamailio. Every
// other key (no registrar: it defaults to sip:<domain>, reached through
// the outbound proxy) is the README's. A connect must register the
// identity, and an INVITE from SIPp through Kamailio must ring it.
func TestReadmeSIPExample(t *testing.T) {
	k := startKamailio(t)
	example := readmeSIPExample(t)
	for _, r := range []struct{ readme, test string }{
		{"127.0.0.1:5070", "127.0.0.1:0"},       // listen.udp and listen.tcp
		{"sip:127.0.0.1:5060", "sip:" + k.Addr}, // outbound_proxy, "e.g. Kamailio"
	} {
		if !strings.Contains(example, r.readme) {
			t.Fatalf("the README's sip example no longer has %q:\n%s", r.readme, example)
		}
		example = strings.ReplaceAll(example, r.readme, r.test)
	}
	path := filepath.Join(t.TempDir(), "jsonrtcd.yaml")
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("the README's sip example: %v\n%s", err, example)
	}
	w := startWebGateway(t, k, func(c *gateway.Config) { *c = cfg })

	// "open" registers without a challenge at the test Kamailio (the
	// example's credentials are alice's, with a password of its own).
	u := w.connect(t, "open@"+domain, nil)
	if st := w.g.SIPStats(); st.Registrations != 1 {
		t.Fatalf("registrations %+v after a connect, want 1", st)
	}
	uac := startSipp(t, "uac_call_user.xml", k.Addr, "-s", "open")
	in := webNext(t, u, client.EventIncomingCall)
	if !strings.HasPrefix(in.Call.Peer(), "bob@") {
		t.Fatalf("incoming call from %q", in.Call.Peer())
	}
	if err := in.Call.Ring(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, u, client.CallEstablished)
	webExpect(t, u, client.CallEnded)
	uac.expectSuccess(t)
}
