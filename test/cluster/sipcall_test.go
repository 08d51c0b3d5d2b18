package cluster

import (
	"context"
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
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
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
func TestSIPCallOutSurvivesKill(t *testing.T) {
	t.Parallel()
	sipCallSurvives(t, true, false, syscall.SIGKILL)
}

// TestSIPCallOutWebHangsUpAfterKill: the same; after the failover the
// user puts SIPp on hold (a re-INVITE from the adopter, which SIPp
// answers) and hangs up.
func TestSIPCallOutWebHangsUpAfterKill(t *testing.T) {
	t.Parallel()
	sipCallSurvives(t, true, true, syscall.SIGKILL)
}

// TestSIPCallInSurvivesKill: SIPp called the user (SIP to web); after
// the call, SIPp calls the user again: the call rings through n2 (the
// binding moved with the session) and is answered and hung up.
func TestSIPCallInSurvivesKill(t *testing.T) {
	t.Parallel()
	sipCallSurvives(t, false, false, syscall.SIGKILL)
}

// TestSIPCallInWebHangsUpAfterKill: SIPp called the user; after the
// failover the user puts SIPp on hold and hangs up.
func TestSIPCallInWebHangsUpAfterKill(t *testing.T) {
	t.Parallel()
	sipCallSurvives(t, false, true, syscall.SIGKILL)
}

// TestSIPCallOutMovesOnDrain: the user called SIPp; n1 is drained
// (SIGTERM): it releases the dialog, writes the call's record marked
// released and closes the user's socket; the node the client resumes on
// adopts the call at once (no lease to wait for). Before, the drain
// kept the session on n1 until the call ended.
func TestSIPCallOutMovesOnDrain(t *testing.T) {
	t.Parallel()
	sipCallSurvives(t, true, false, syscall.SIGTERM)
}

// TestSIPCallInMovesOnDrain: SIPp called the user; n1 is drained.
func TestSIPCallInMovesOnDrain(t *testing.T) {
	t.Parallel()
	sipCallSurvives(t, false, false, syscall.SIGTERM)
}

func sipCallSurvives(t *testing.T, out, webBye bool, sig syscall.Signal) {
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
	nodes[0].signal(sig)
	resumedBy(t, user, time.Now().Add(30*time.Second))
	untilMetric(t, "jsonrtc_sip_calls_adopted_total", 1, nodes[1].metrics, nodes[2].metrics)
	t.Logf("SIP call adopted %v after the %v", time.Since(killed).Round(time.Millisecond), sig)
	nodes[0].wait(t, sig)
	if webBye {
		// The user's hold, then hang-up, reach SIPp through the adopter.
		if err := call.ReOffer(tctx(t), strings.ReplaceAll(offer, "a=sendrecv", "a=sendonly")); err != nil {
			t.Fatal(err)
		}
		untilCallEvent(t, user, client.CallReOfferAnswered)
		if err := call.Hangup(tctx(t)); err != nil {
			t.Fatal(err)
		}
		sipp.wait(t)
		return
	}
	ro := untilCallEvent(t, user, client.CallReOffer)
	sippGoesOn(t, user, call, ro, answer)
	sipp.wait(t)
	if !out {
		sippCall(t, kaddr, user)
	}
}

// sippGoesOn: after the failover SIPp's re-INVITE (ro) is answered by
// the user, and SIPp's INFO (DTMF 7) and BYE reach the user.
func sippGoesOn(t *testing.T, user *client.Client, call *client.Call, ro client.Event, answer string) {
	t.Helper()
	if err := call.Answer(tctx(t), answer); err != nil {
		t.Fatalf("answering SIPp's re-INVITE (%q): %v", ro.SDP, err)
	}
	if ev := untilCallEvent(t, user, client.CallDTMF); ev.Digits != "7" {
		t.Fatalf("DTMF %q, want SIPp's 7", ev.Digits)
	}
	untilCallEvent(t, user, client.CallEnded)
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
func runSipp(t testing.TB, scenario, remote string, extra ...string) *sippRun {
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
func (s *sippRun) wait(t testing.TB) {
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
func waitBound(t testing.TB, port int) {
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

// TestSIPCallMediaSurvivesKill: the user's call to SIPp is anchored in a
// real rtpengine; n1 is killed. The adopter goes on with the same
// rtpengine call: the dead node's media ledger sweep leaves it (SIPp
// waits past the sweep), SIPp's hold re-INVITE reaches the user through
// rtpengine as a WebRTC offer, the user's answer reaches SIPp, and at
// SIPp's BYE the adopter deletes the call in rtpengine. Before, the
// adopter had no rtpengine session (the re-INVITE's SDP went to the
// browser as plain RTP), and the sweep deleted the call's media.
func TestSIPCallMediaSurvivesKill(t *testing.T) {
	t.Parallel()
	eng, ngAddr := startRTPEngine(t)
	_, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\nmedia:\n  rtpengine: [\""+ngAddr+"\"]\n  ping_interval: 200ms\n")
	user := dial(t, regUser+"@example.com", urls(nodes, 0), nil)
	sipp := runSipp(t, "uas_failover_media.xml", "")
	call, err := user.StartCall(tctx(t), "uas-"+strconv.Itoa(sipp.port)+"@example.com", browserSDP(t, "chrome_offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	untilCallEvent(t, user, client.CallEstablished)
	untilMetric(t, "jsonrtc_call_records", 1, nodes[0].metrics)
	ids := liveCalls(t, eng)
	if len(ids) != 1 {
		t.Fatalf("rtpengine holds %v, want the call", ids)
	}
	created := callCreated(t, eng, ids[0])
	nodes[0].stop(t, syscall.SIGKILL)
	resumedBy(t, user, time.Now().Add(30*time.Second))
	untilMetric(t, "jsonrtc_sip_calls_adopted_total", 1, nodes[1].metrics, nodes[2].metrics)
	ro := untilCallEvent(t, user, client.CallReOffer)
	if !strings.Contains(ro.SDP, "a=ice-ufrag:") || !strings.Contains(ro.SDP, "a=fingerprint:") {
		t.Fatalf("SIPp's re-INVITE reached the user without rtpengine's WebRTC rewrite:\n%s", ro.SDP)
	}
	// The same call, not one the re-offer made again after a sweep
	// deleted it.
	if now := liveCalls(t, eng); len(now) != 1 || now[0] != ids[0] || callCreated(t, eng, ids[0]) != created {
		t.Fatalf("rtpengine holds %v after the dead node's sweep, want the call %s made at %s", now, ids[0], created)
	}
	if err := call.Answer(tctx(t), strings.ReplaceAll(browserSDP(t, "chrome_answer.sdp"), "a=sendrecv", "a=recvonly")); err != nil {
		t.Fatal(err)
	}
	if ev := untilCallEvent(t, user, client.CallDTMF); ev.Digits != "7" {
		t.Fatalf("DTMF %q, want SIPp's 7", ev.Digits)
	}
	untilCallEvent(t, user, client.CallEnded)
	sipp.wait(t)
	for deadline := time.Now().Add(10 * time.Second); len(liveCalls(t, eng)) != 0; <-time.After(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("rtpengine still holds %v 10 s after the call ended", liveCalls(t, eng))
		}
	}
}

// startRTPEngine runs rtpengine on reserved ports until the test ends
// and returns a client of it that has seen it answer, and its ng address.
func startRTPEngine(t *testing.T) (*rtpengine.Client, string) {
	t.Helper()
	bin := testenv.Tool(t, "rtpengine", "apt-get install rtpengine")
	ng, media := testenv.Port(t), testenv.Ports(t, 20)
	addr := "127.0.0.1:" + strconv.Itoa(ng)
	cmd := exec.Command(bin, "--config-file=none", "--interface=127.0.0.1", "--listen-ng="+addr, "--table=-1",
		"--foreground", "--log-stderr", "--log-level=6",
		"--port-min="+strconv.Itoa(media), "--port-max="+strconv.Itoa(media+19))
	out, err := os.Create(filepath.Join(t.TempDir(), "rtpengine.log"))
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
			b, _ := os.ReadFile(out.Name())
			t.Logf("rtpengine log:\n%s", b)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := rtpengine.Dial(ctx, addr, &rtpengine.Options{Retransmit: 100 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The first pings go out before rtpengine listens: retransmitted.
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("rtpengine does not answer ping: %v", err)
	}
	return c, addr
}

// liveCalls lists the calls rtpengine holds.
func liveCalls(t *testing.T, eng *rtpengine.Client) []string {
	t.Helper()
	ids, err := eng.List(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// callCreated returns when rtpengine made the call callID, as its query
// says.
func callCreated(t *testing.T, eng *rtpengine.Client, callID string) string {
	t.Helper()
	r, err := eng.Query(t.Context(), &rtpengine.Request{CallID: callID})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(r.Raw["created"], ".", r.Raw["created_us"])
}

// browserSDP reads a browser's SDP from test/interop's test data.
func browserSDP(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "interop", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\n", "\r\n")
}

// TestSIPCallSurvivesRestart: the user's only node, n1, is killed during
// its call to SIPp and started again on its data directory (its SIP port
// a new one): it adopts its own call back from the record (as a restart
// does its web calls), refreshes the dialog's target with its new
// Contact, and the user, resuming on n1, gets SIPp's re-INVITE, INFO and
// BYE. Before, the call ended with n1's earlier life.
func TestSIPCallSurvivesRestart(t *testing.T) {
	t.Parallel()
	_, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	user := dial(t, regUser+"@example.com", []string{nodes[0].ws()}, nil)
	sipp := runSipp(t, "uas_failover.xml", "")
	call, err := user.StartCall(tctx(t), "uas-"+strconv.Itoa(sipp.port)+"@example.com", offer)
	if err != nil {
		t.Fatal(err)
	}
	untilCallEvent(t, user, client.CallEstablished)
	untilMetric(t, "jsonrtc_call_records", 1, nodes[0].metrics)
	nodes[0].stop(t, syscall.SIGKILL)
	nodes[0].start(t)
	resumedBy(t, user, time.Now().Add(40*time.Second))
	untilMetric(t, "jsonrtc_sip_calls_adopted_total", 1, nodes[0].metrics)
	ro := untilCallEvent(t, user, client.CallReOffer)
	sippGoesOn(t, user, call, ro, answer)
	sipp.wait(t)
}
