package cluster

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// TestSIPCallRingingCancelledOnKill: the user (on n1) calls SIPp through
// Kamailio, SIPp rings (180) and never answers; n1 is killed (kill -9).
// The call's record (written from the INVITE's sending) lets the node
// the user resumes on cancel the INVITE as n1 would have: Kamailio
// matches the CANCEL to the INVITE by its branch and relays it, and SIPp
// answers 200 and 487 (its scenario expects the CANCEL); the user hears
// the call failed with 503 and why. Before, SIPp rang until the INVITE
// timed out and the user heard "the call's node went down".
func TestSIPCallRingingCancelledOnKill(t *testing.T) {
	t.Parallel()
	_, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	user := dial(t, regUser+"@example.com", urls(nodes, 0), nil)
	sipp := runSipp(t, "uas_ring_cancel.xml", "")
	if _, err := user.StartCall(tctx(t), "uas-"+strconv.Itoa(sipp.port)+"@example.com", offer); err != nil {
		t.Fatal(err)
	}
	untilCallEvent(t, user, client.CallRinging)
	untilMetric(t, "jsonrtc_sip_call_records_ringing", 1, nodes[0].metrics)

	killed := time.Now()
	nodes[0].signal(syscall.SIGKILL)
	resumedBy(t, user, time.Now().Add(30*time.Second))
	untilMetric(t, "jsonrtc_sip_calls_cancelled_total", 1, nodes[1].metrics, nodes[2].metrics)
	t.Logf("ringing SIP call cancelled %v after the kill", time.Since(killed).Round(time.Millisecond))
	nodes[0].wait(t, syscall.SIGKILL)
	failed := untilFailed(t, user)
	if failed.Code != 503 || !strings.Contains(failed.Reason, "before the answer") {
		t.Fatalf("the call failed with %d %q, want 503 saying the node went down before the answer", failed.Code, failed.Reason)
	}
	sipp.wait(t)
}

// TestSIPCallRingingRefusedOnKill: SIPp calls the user, who has two
// sessions on n1, through Kamailio; the call rings both, and nobody
// answers; n1 is killed (kill -9). The call's record (written while it
// rang, one for both sessions: under one's key, the other's pointing at
// it) lets the node that first finds it, as a session resumes there,
// answer SIPp's INVITE 480 as n1 would have: Kamailio matches the answer
// to its branch by the Via and relays it, SIPp's scenario expects it;
// each session hears the call ended, once the node went down before the
// answer. The sessions resume on n2 and n3 when they can (their URLs
// after n1 differ). Before, SIPp rang until Kamailio's INVITE timer ran
// out, and the user heard "the call's node went down"; with two sessions
// the call had no record at all.
func TestSIPCallRingingRefusedOnKill(t *testing.T) {
	t.Parallel()
	kaddr, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	users := []*client.Client{
		dial(t, regUser+"@example.com", urls(nodes, 0), nil),
		dial(t, regUser+"@example.com", []string{nodes[0].ws(), nodes[2].ws(), nodes[1].ws()}, nil),
	}
	sipp := runSipp(t, "uac_ring_refused.xml", kaddr, "-s", regUser)
	for _, u := range users {
		event(t, u, client.EventIncomingCall)
	}
	untilMetric(t, "jsonrtc_sip_call_records_ringing", 1, nodes[0].metrics)

	killed := time.Now()
	nodes[0].signal(syscall.SIGKILL)
	for _, u := range users {
		resumedBy(t, u, time.Now().Add(30*time.Second))
	}
	untilMetric(t, "jsonrtc_sip_calls_cancelled_total", 1, nodes[1].metrics, nodes[2].metrics)
	t.Logf("ringing SIP call refused %v after the kill", time.Since(killed).Round(time.Millisecond))
	nodes[0].wait(t, syscall.SIGKILL)
	for i, u := range users {
		if ended := untilFailed(t, u); !strings.Contains(ended.Reason, "before the answer") {
			t.Fatalf("the call ended for session %d with %d %q, want the node gone before the answer", i+1, ended.Code, ended.Reason)
		}
	}
	sipp.wait(t)
}

// untilFailed returns c's next CallFailed or CallEnded, within 30 s.
func untilFailed(t *testing.T, c *client.Client) client.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok || ev.Kind == client.EventClosed || ev.Kind == client.EventSessionLost {
				t.Fatalf("%s: closed waiting for the call's failure", c.Identity())
			}
			if ev.Kind == client.EventCall && (ev.CallEvent == client.CallFailed || ev.CallEvent == client.CallEnded) {
				return ev
			}
		case <-timeout:
			t.Fatalf("%s: the call did not fail within 30 s", c.Identity())
		}
	}
}
