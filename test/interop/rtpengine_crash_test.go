package interop

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// TestRTPEngineGatewayCrash: jsonrtcd (the real binary, its embedded
// NATS store on disk) is SIGKILLed in the middle of a browser's call
// to a SIPp phone through a real rtpengine: nothing deletes the call's
// media. When jsonrtcd starts again on the same data it listens at once,
// and its media ledger names the call, left to the adoption of the
// call's SIP record: SIPp's scenario ignores the adoption's target
// refresh, and the failed adoption deletes the media in rtpengine at
// the refresh's bound (10 s), not at rtpengine's --timeout (docs/media.md,
// "A gateway that dies"; docs/cluster.md "Start-up").
func TestRTPEngineGatewayCrash(t *testing.T) {
	eng, ngAddr, _ := startRTPEngineProc(t, 40)
	k := startKamailio(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "jsonrtcd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/jsonrtc/jsonrtc/cmd/jsonrtcd").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "jsonrtcd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`sip:
  listen: {udp: "127.0.0.1:%d"}
  domain: %s
  outbound_proxy: "sip:%s"
  registrar: "sip:%s"
media:
  rtpengine: ["%s"]
  ping_interval: 200ms
`, testenv.Port(t), domain, k.Addr, k.Addr, ngAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.Port(t))
	run := func() *proc {
		p := start(t, "jsonrtcd", dir, bin, "-config", cfg, "-listen", httpAddr, "-metrics-listen", "-", "-data", filepath.Join(dir, "data"))
		for i := 0; ; i++ {
			if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p
				}
			}
			// 10 s: the start listens before it adopts back the calls
			// of its earlier life (docs/cluster.md "Start-up").
			if i > 400 {
				t.Fatalf("jsonrtcd did not come up:\n%s", p.out.String())
			}
			<-time.After(25 * time.Millisecond) // a process starting: no event to wait on
		}
	}
	p := run()
	uas := startSipp(t, "uas_answer.xml", "")
	a, err := client.Dial(ctxT(t), client.Options{URL: "ws://" + httpAddr + "/ws/webrtc/test", Identity: "open@" + domain,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Kill() })
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), chromeSDP(t, "chrome_offer.sdp")); err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	ids := liveCalls(t, eng)
	if len(ids) != 1 {
		t.Fatalf("rtpengine holds %v, want the call", ids)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	a.Kill()
	if got := liveCalls(t, eng); len(got) != 1 {
		t.Fatalf("rtpengine holds %v after the crash, want the call still (nothing deleted it)", got)
	}
	restarted := time.Now()
	p = run()
	t.Logf("jsonrtcd ready %v after it started again", time.Since(restarted).Round(time.Millisecond))
	for len(liveCalls(t, eng)) != 0 {
		// The refresh's 10 s, and the start's.
		if time.Since(restarted) > 20*time.Second {
			t.Fatalf("rtpengine still holds %v 20 s after jsonrtcd started again:\n%s", liveCalls(t, eng), p.out.String())
		}
		<-time.After(50 * time.Millisecond) // rtpengine tells no one: polled
	}
	t.Logf("the crashed call's media deleted %v after jsonrtcd started again", time.Since(restarted).Round(time.Millisecond))
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-p.done
}
