package cluster

import (
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
)

// Issue 15: a call between a web user and a SIP phone survives the death
// of the node serving the user. The user (open@example.com, registered
// at a real Kamailio) is on n1, in a call with SIPp through Kamailio
// (which record-routes); n1 is killed (kill -9). The client resumes on
// n2, which finds the call's record (its route names the dead n1),
// takes it by compare-and-set and adopts the SIP dialog: a target
// refresh with n2's Contact, which the SIPp scenario waits for. Then
// SIPp's re-INVITE (with SDP), INFO (DTMF) and BYE reach the user
// through n2, or, in the second variant, the user's hang-up reaches
// SIPp as a BYE from n2 (the scenario expects it). Before, the call
// ended with n1: the user got shutdown ("the call's node went down")
// at the resume, and SIPp's requests went unanswered.

// TestSIPCallOutSurvivesKill: the user called SIPp (web to SIP).
func TestSIPCallOutSurvivesKill(t *testing.T) { sipCallSurvives(t, true, false) }

// TestSIPCallOutWebHangsUpAfterKill: the same; the user hangs up after
// the failover.
func TestSIPCallOutWebHangsUpAfterKill(t *testing.T) { sipCallSurvives(t, true, true) }

// TestSIPCallInSurvivesKill: SIPp called the user (SIP to web); after
// the call, SIPp calls the user again: the call rings through n2 (the
// binding moved with the session) and is answered and hung up.
func TestSIPCallInSurvivesKill(t *testing.T) { sipCallSurvives(t, false, false) }

// TestSIPCallInWebHangsUpAfterKill: SIPp called the user; the user hangs
// up after the failover.
func TestSIPCallInWebHangsUpAfterKill(t *testing.T) { sipCallSurvives(t, false, true) }

func sipCallSurvives(t *testing.T, out, webBye bool) {
	kaddr, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	user := dial(t, regUser+"@example.com", urls(nodes, 0), nil)
	scenario := "uac_failover.xml"
	if out {
		scenario = "uas_failover.xml"
	}
	if webBye {
		scenario = scenario[:len(scenario)-len(".xml")] + "_webbye.xml"
	}
	var call *client.Call
	var sipp *sippRun
	if out {
		sipp = runSipp(t, scenario, "")
		c, err := user.StartCall(tctx(t), "uas-"+strconv.Itoa(sipp.port)+"@example.com", offer)
		if err != nil {
			t.Fatal(err)
		}
		call = c
		untilCallEvent(t, user, client.CallEstablished)
	} else {
		sipp = runSipp(t, scenario, kaddr, "-s", regUser)
		in := event(t, user, client.EventIncomingCall)
		call = in.Call
		if err := call.Answer(tctx(t), answer); err != nil {
			t.Fatal(err)
		}
		untilCallEvent(t, user, client.CallEstablished)
	}
	// The call's record is in the store (written out of line at the
	// confirmation) before n1 dies.
	untilMetric(t, "jsonrtc_call_records", 1, nodes[0].metrics)

	killed := time.Now()
	nodes[0].stop(t, syscall.SIGKILL)
	resumedBy(t, user, time.Now().Add(30*time.Second))
	untilMetric(t, "jsonrtc_sip_calls_adopted_total", 1, nodes[1].metrics, nodes[2].metrics)
	t.Logf("SIP call adopted %v after the kill", time.Since(killed).Round(time.Millisecond))
	if webBye {
		if err := call.Hangup(tctx(t)); err != nil {
			t.Fatal(err)
		}
		sipp.wait(t)
		return
	}
	ro := untilCallEvent(t, user, client.CallReOffer)
	if err := call.Answer(tctx(t), answer); err != nil {
		t.Fatalf("answering SIPp's re-INVITE (%q): %v", ro.SDP, err)
	}
	if ev := untilCallEvent(t, user, client.CallDTMF); ev.Digits != "7" {
		t.Fatalf("DTMF %q, want SIPp's 7", ev.Digits)
	}
	untilCallEvent(t, user, client.CallEnded)
	sipp.wait(t)
	if !out {
		sippCall(t, kaddr, user)
	}
}

// untilCallEvent returns c's next call event want, within 30 s, passing
// others by; an end of the call first fails the test.
func untilCallEvent(t *testing.T, c *client.Client, want client.CallEvent) client.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok || ev.Kind == client.EventClosed || ev.Kind == client.EventSessionLost {
				t.Fatalf("%s: closed waiting for %v", c.Identity(), want)
			}
			if ev.Kind != client.EventCall {
				continue
			}
			if ev.CallEvent == want {
				return ev
			}
			if ev.CallEvent == client.CallEnded || ev.CallEvent == client.CallFailed {
				t.Fatalf("%s: call over (%v %d %q) waiting for %v", c.Identity(), ev.CallEvent, ev.Code, ev.Reason, want)
			}
		case <-timeout:
			t.Fatalf("%s: no %v within 30 s", c.Identity(), want)
		}
	}
}

// sippRun is a SIPp scenario running until its one call is over.
type sippRun struct {
	port int
	dir  string
	done chan error
	out  []byte
}

// runSipp runs scenario (of ./scenarios) for one call, toward remote
// ("": a UAS, bound before it returns); its logs go to the test's log
// when the test fails.
func runSipp(t *testing.T, scenario, remote string, extra ...string) *sippRun {
	t.Helper()
	s := &sippRun{port: testenv.Port(t), dir: t.TempDir(), done: make(chan error, 1)}
	// SIPp writes its logs next to the scenario: a copy in a temp dir.
	b, err := os.ReadFile(filepath.Join("scenarios", scenario))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.dir, scenario)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-sf", path, "-m", "1", "-i", "127.0.0.1", "-p", strconv.Itoa(s.port),
		"-timeout", "50s", "-timeout_error", "-nostdin", "-trace_err", "-trace_msg"}, extra...)
	if remote != "" {
		args = append(args, remote)
	}
	cmd := exec.Command("sipp", args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		s.done <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			for _, pat := range []string{"*errors.log", "*messages.log"} {
				if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), pat)); len(m) > 0 {
					b, _ := os.ReadFile(m[0])
					t.Logf("--- sipp %s %s ---\n%s", scenario, pat, b)
				}
			}
		}
	})
	if remote == "" {
		waitBound(t, s.port)
	}
	return s
}

// wait waits for the scenario's end, which must be a success.
func (s *sippRun) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("sipp: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("sipp still running after 60 s")
	}
}

// waitBound waits until a process has bound 127.0.0.1:port (UDP): SIPp's
// UAS, ready for the INVITE.
func waitBound(t *testing.T, port int) {
	t.Helper()
	want := fmt.Sprintf("0100007F:%04X", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile("/proc/net/udp"); err == nil && strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing bound on UDP port %d after 10 s", port)
		}
	}
}
