package cluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/kamailio"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// regUser registers at Kamailio without digest (kamailio.Options.Users),
// so that the test can query its bindings with a plain REGISTER.
const regUser = "open"

// TestRegistrationMovesOnKill (issue 15): a web user's SIP binding moves
// with its session. open@example.com is connected on n1, registered at
// a real Kamailio; SIPp calls it through Kamailio and the call rings and
// is answered on n1. n1 is killed (kill -9); the client resumes on n2,
// which registers the identity's binding under the same +sip.instance
// with its own Contact: Kamailio holds one binding, n2's, not n1's dead
// one next to it. SIPp calls again: the call rings the user's session
// through n2, is answered and hung up by SIPp.
func TestRegistrationMovesOnKill(t *testing.T) {
	t.Parallel()
	testRegistrationMoves(t, syscall.SIGKILL)
}

// TestRegistrationMovesOnDrain: the same with n1 drained (SIGTERM): n1
// lets go of the binding without removing it, which would take n2's
// away (the registrar matches the removal by instance).
func TestRegistrationMovesOnDrain(t *testing.T) {
	t.Parallel()
	testRegistrationMoves(t, syscall.SIGTERM)
}

func testRegistrationMoves(t *testing.T, sig syscall.Signal) {
	kaddr, nodes := kamailioCluster(t, "")
	user := dial(t, regUser+"@example.com", urls(nodes, 0), nil)
	before := bindings(t, kaddr)
	if len(before) != 1 {
		t.Fatalf("bindings after the connect on n1: %v, want 1", before)
	}
	sippCall(t, kaddr, user)

	id := user.SessionID()
	nodes[0].stop(t, sig)
	event(t, user, client.EventResumed)
	if user.SessionID() != id {
		t.Fatalf("session %s became %s: not resumed", id, user.SessionID())
	}
	// n2 registered during the resume, before answering it.
	after := bindings(t, kaddr)
	if len(after) != 1 || after[0] == before[0] {
		t.Fatalf("bindings after the resume on another node: %v (before the kill: %v), want one, not n1's", after, before)
	}
	sippCall(t, kaddr, user)
}

// kamailioCluster starts the tests' Kamailio and three nodes whose SIP
// side registers there; sip has more lines of their sip section
// ({kamailio} is Kamailio's address). It returns the address and the
// nodes.
func kamailioCluster(t testing.TB, sip string) (string, []*node) {
	t.Helper()
	return kamailioClusterWith(t, sip, kamailio.Options{})
}

// kamailioClusterWith is kamailioCluster with Kamailio's options o (its
// timers; the rest are the tests' own).
func kamailioClusterWith(t testing.TB, sip string, o kamailio.Options) (string, []*node) {
	t.Helper()
	testenv.Tool(t, "kamailio", "apt-get install kamailio")
	testenv.Tool(t, "sipp", "apt-get install sip-tester")
	kaddr := startKamailioWith(t, o)
	nodes := newClusterWith(t, fmt.Sprintf(`sip:
  domain: example.com
  registrar: sip:%s
  instance_id: urn:jsonrtc:{node}
  listen: {udp: "127.0.0.1:0"}
`, kaddr)+strings.ReplaceAll(sip, "{kamailio}", kaddr))
	return kaddr, nodes
}

// startKamailio runs the tests' Kamailio (internal/kamailio) until the
// test ends and returns its address.
func startKamailio(t testing.TB) string {
	t.Helper()
	return startKamailioWith(t, kamailio.Options{})
}

// startKamailioWith is startKamailio with o's timers.
func startKamailioWith(t testing.TB, o kamailio.Options) string {
	t.Helper()
	port := testenv.Port(t)
	cfg, err := kamailio.Config(kamailio.Options{Domain: "example.com", Port: port, ModPath: kamailio.ModulesDir(),
		Users: map[string]string{regUser: ""}, Workers: 1, InviteTimer: o.InviteTimer})
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	runKamailio(t, t.TempDir(), cfg, addr)
	return addr
}

// runKamailio runs Kamailio with configuration cfg in dir until the test
// ends, waits until it listens on addr (TCP), and returns the path of
// its log.
func runKamailio(t testing.TB, dir string, cfg []byte, addr string) string {
	t.Helper()
	path := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("kamailio", "-DD", "-E", "-f", path, "-P", filepath.Join(dir, "kamailio.pid"), "-Y", dir, "-w", dir, "-m", "64", "-M", "8")
	out, err := os.Create(filepath.Join(dir, "kamailio.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // it forks workers
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("kamailio log:\n%s", b)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// Its TCP listener is up with the UDP one.
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return out.Name()
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio not listening on %s", addr)
		}
	}
}

// bindings asks the registrar at addr for regUser's bindings (a REGISTER
// without Contact, RFC 3261 section 10.2.3) and returns their Contact
// URIs.
func bindings(t *testing.T, addr string) []string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	req := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";rport;branch=z9hG4bK-q" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\n" +
		"From: <sip:" + regUser + "@example.com>;tag=q\r\nTo: <sip:" + regUser + "@example.com>\r\n" +
		"Call-ID: query-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	buf := make([]byte, 65535)
	for try := 0; try < 5; try++ {
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue // UDP: sent again
		}
		m, err := sip.ParseMessage(buf[:n])
		res, ok := m.(*sip.Response)
		if err != nil || !ok || res.StatusCode != 200 {
			t.Fatalf("binding query answered %v (%v)", m, err)
		}
		var out []string
		for _, h := range res.GetHeaders("Contact") {
			if ct, ok := h.(*sip.ContactHeader); ok {
				out = append(out, ct.Address.String())
			}
		}
		return out
	}
	t.Fatal("no answer to the binding query")
	return nil
}

// sippCall has SIPp call regUser through Kamailio at kaddr; the user
// (client c) answers, and SIPp hangs up.
func sippCall(t *testing.T, kaddr string, c *client.Client) {
	t.Helper()
	sippCallUser(t, kaddr, regUser, c)
}

// sippCallUser is sippCall to the Request-URI user ruser.
func sippCallUser(t *testing.T, kaddr, ruser string, c *client.Client) {
	t.Helper()
	scenario, err := filepath.Abs("../interop/scenarios/uac_call_user.xml")
	if err != nil {
		t.Fatal(err)
	}
	_, wait := startSIPp(t, "-sf", scenario, "-s", ruser, kaddr)
	in := event(t, c, client.EventIncomingCall)
	if err := in.Call.Ring(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := in.Call.Answer(tctx(t), answer); err != nil {
		t.Fatal(err)
	}
	callEvent(t, c, client.CallEstablished)
	callEvent(t, c, client.CallEnded) // SIPp's BYE
	wait()
}

// startSIPp runs one call of SIPp with args on 127.0.0.1 and a port of
// its own; wait fails the test unless it ends well within 30 s.
func startSIPp(t *testing.T, args ...string) (port int, wait func()) {
	t.Helper()
	port = testenv.Port(t)
	args = append([]string{"-m", "1", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-timeout", "30s", "-timeout_error", "-nostdin"}, args...)
	cmd := exec.Command("sipp", args...)
	cmd.Dir = t.TempDir()
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = cmd.CombinedOutput()
		done <- err
	}()
	return port, func() {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("sipp: %v\n%s", err, out)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("sipp still running\n%s", out)
		}
	}
}
