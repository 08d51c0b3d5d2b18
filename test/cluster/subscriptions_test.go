package cluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestSubscriptionsMoveOnKill (issue 15): a web user's SIP subscriptions
// survive the death of its node. open@example.com, on n1, watches a SIP
// presentity and subscribes to a mailbox, each served by a SIPp notifier
// reached through a real Kamailio, which notifies the first SUBSCRIBE
// dialog "dialog 1" (1 new message). n1 is killed (kill -9); the client
// resumes on another node, which subscribes again, for the same
// subsessions, with its own Contact, without the client asking: the
// notifiers' NOTIFYs on the new dialogs ("dialog 2", 2 new messages)
// reach the user through the new node. Before, the subscriptions were
// lost with n1: the client heard nothing more.
func TestSubscriptionsMoveOnKill(t *testing.T) {
	t.Parallel()
	testSubscriptionsMove(t, syscall.SIGKILL)
}

// TestSubscriptionsMoveOnDrain: the same with n1 drained (SIGTERM): n1
// ends its SUBSCRIBE dialogs (Expires: 0), which the notifiers answer
// with a terminating NOTIFY; the client sees none of it.
func TestSubscriptionsMoveOnDrain(t *testing.T) {
	t.Parallel()
	testSubscriptionsMove(t, syscall.SIGTERM)
}

func testSubscriptionsMove(t *testing.T, sig syscall.Signal) {
	pres := startNotifier(t, "presence_moved.xml")
	mwi := startNotifier(t, "mwi_moved.xml")
	_, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	user := dial(t, regUser+"@example.com", urls(nodes, 0), nil)
	subscribeBoth(t, user, pres, mwi)

	id := user.SessionID()
	signalled := time.Now()
	nodes[0].stop(t, sig)
	waitSubscriptions(t, user, true, map[string]string{"w1": "dialog 2", "m1": "2/8 (0/2)"})
	t.Logf("the new dialogs' NOTIFYs reached the user %v after the signal (%v)", time.Since(signalled).Round(time.Millisecond), sig)
	if user.SessionID() != id {
		t.Fatalf("session %s became %s: not resumed", id, user.SessionID())
	}
	if sig == syscall.SIGTERM {
		// n1 ended its dialogs: each notifier's first instance ran to
		// its end.
		pres.finished(t, 1)
		mwi.finished(t, 1)
	}
}

// subscribeBoth has user watch pres's presentity (subsession w1) and
// subscribe to mwi's mailbox (m1), and waits for both subscriptions'
// first states ("dialog 1", 1 new message).
func subscribeBoth(t *testing.T, user *client.Client, pres, mwi *notifier) {
	t.Helper()
	presentity := "sip:uas-" + strconv.Itoa(pres.port) + "@example.com"
	mailbox := "sip:uas-" + strconv.Itoa(mwi.port) + "@example.com"
	if _, err := user.Watch(tctx(t), "w1", presentity); err != nil {
		t.Fatal(err)
	}
	start := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessageNotification, SubsessionID: "m1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: user.Identity(), Target: mailbox},
	}
	if _, err := user.SendFrame(tctx(t), start); err != nil {
		t.Fatal(err)
	}
	// Both subscriptions answered, and the first dialogs' states in.
	waitSubscriptions(t, user, false, map[string]string{"w1": "dialog 1", "m1": "1/8 (0/2)"})
}

// waitSubscriptions waits, within 60 s (a kill: the lease TTL, the
// resume, the new SUBSCRIBEs through Kamailio), for c's notifies whose
// payload contains want[subsession], for each subsession, and for its
// resume too when resumed; other notifies are skipped (the presence
// watch's first notify may say "closed", nothing known yet). An error
// frame (a start refused), a shutdown of a subscription, a lost session
// or a closed client fails the test at once.
func waitSubscriptions(t *testing.T, c *client.Client, resumed bool, want map[string]string) {
	t.Helper()
	left := map[string]string{}
	for k, v := range want {
		left[k] = v
	}
	timeout := time.After(60 * time.Second)
	for len(left) > 0 || resumed {
		select {
		case ev, ok := <-c.Events():
			if !ok || ev.Kind == client.EventClosed || ev.Kind == client.EventSessionLost {
				t.Fatalf("%s: %v waiting for %v", c.Identity(), ev.Kind, left)
			}
			if ev.Kind == client.EventResumed {
				resumed = false
				continue
			}
			f := ev.Frame
			if f == nil || ev.Kind != client.EventFrame && ev.Kind != client.EventError {
				continue
			}
			sub := f.Control.SubsessionID
			switch {
			case f.Control.Type == protocol.TypeError || f.Header.Action == protocol.ActionShutdown:
				t.Fatalf("%s: %s %s on %s: %d %s", c.Identity(), f.Control.Type, f.Header.Action, sub, f.Header.ErrorCode, f.Header.Reason)
			case f.Header.Action == protocol.ActionNotify && strings.Contains(string(f.Payload), left[sub]) && left[sub] != "":
				delete(left, sub)
			}
		case <-timeout:
			t.Fatalf("%s: within 60 s, no notify of %v (resume still awaited: %v)", c.Identity(), left, resumed)
		}
	}
}

// notifier is a SIPp notifier (UAS) on 127.0.0.1:port.
type notifier struct {
	port int
	dir  string
}

// startNotifier runs SIPp with scenario (test/interop/scenarios) as a
// UAS until the test ends, and waits until it listens.
func startNotifier(t *testing.T, scenario string) *notifier {
	t.Helper()
	n := &notifier{port: testenv.Port(t), dir: t.TempDir()}
	// SIPp writes its logs next to the scenario: it runs a copy.
	b, err := os.ReadFile(filepath.Join("../interop/scenarios", scenario))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, scenario), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sipp", "-sf", scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(n.port), "-nostdin",
		"-trace_err", "-trace_msg", "-trace_stat", "-fd", "1")
	cmd.Dir = n.dir // its logs
	out, err := os.Create(filepath.Join(n.dir, "sipp.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			for _, pattern := range []string{"*errors.log", "*messages.log"} {
				if m, _ := filepath.Glob(filepath.Join(n.dir, pattern)); len(m) > 0 {
					b, _ := os.ReadFile(m[0])
					if len(b) > 12000 {
						b = b[len(b)-12000:]
					}
					t.Logf("sipp %s %s:\n%s", scenario, pattern, b)
				}
			}
		}
	})
	want := fmt.Sprintf("0100007F:%04X", n.port)
	for deadline := time.Now().Add(10 * time.Second); !udpBound(t, want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sipp %s not listening on %d", scenario, n.port)
		}
	}
	return n
}

// udpBound reports whether /proc/net/udp lists local address addr (hex
// as it writes it).
func udpBound(t *testing.T, addr string) bool {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 && fields[1] == addr {
			return true
		}
	}
	return false
}

// finished waits, within 15 s, until SIPp's statistics (its -trace_stat
// file, written every -fd second) count n calls ended successfully.
func (n *notifier) finished(t *testing.T, want int) {
	t.Helper()
	got := -1
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got = n.successful()
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipp on %d: %d calls ended successfully, want %d", n.port, got, want)
		}
	}
}

// successful reads the last SuccessfulCall(C) of SIPp's statistics.
func (n *notifier) successful() int {
	m, _ := filepath.Glob(filepath.Join(n.dir, "*_.csv"))
	if len(m) == 0 {
		return -1
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		return -1
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return -1
	}
	head, last := strings.Split(lines[0], ";"), strings.Split(lines[len(lines)-1], ";")
	for i, h := range head {
		if h == "SuccessfulCall(C)" && i < len(last) {
			v, _ := strconv.Atoi(last[i])
			return v
		}
	}
	return -1
}
