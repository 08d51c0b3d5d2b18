package cluster

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/kamailio"
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

// TestSIPCallRingingContinuedOnKill (issue 15): SIPp calls the user,
// who has two sessions on n1, through Kamailio; the call rings both; n1
// is killed (kill -9). The call's record (written while it rang, one for
// both sessions: under one's key, the other's pointing at it) lets the
// node that first finds it, as a session resumes there, go on with the
// call: it rings on, the second session answers, and that node sends
// SIPp the 200 n1 would have, built from the record (Kamailio matches it
// to its branch by the Via), with its own Contact, where SIPp's ACK
// goes; the first session hears the call is off; the user's hang-up is
// a BYE SIPp answers, and SIPp's BYE (the other run) reaches the user.
// The sessions resume on n2 and n3 when they can
// (their URLs after n1 differ). Before, the call was refused (480) and
// both sessions told it ended.
func TestSIPCallRingingContinuedOnKill(t *testing.T) {
	t.Parallel()
	for _, by := range []string{"web", "sipp"} {
		t.Run(by+" hangs up", func(t *testing.T) {
			t.Parallel()
			kaddr, nodes := ringingCluster(t)
			scenario := "uac_ring_continued.xml"
			if by == "sipp" {
				scenario = "uac_ring_continued_bye.xml"
			}
			users, calls, sipp := ringTwoThenKill(t, kaddr, nodes, scenario)
			if err := calls[1].Answer(tctx(t), answer); err != nil {
				t.Fatal(err)
			}
			untilCallEvent(t, users[1], client.CallEstablished)
			untilFailed(t, users[0])
			if by == "web" {
				if err := calls[1].Hangup(tctx(t)); err != nil {
					t.Fatal(err)
				}
			} else {
				untilCallEvent(t, users[1], client.CallEnded)
			}
			sipp.wait(t)
		})
	}
}

// TestSIPCallRingingDeclinedAfterKill: as TestSIPCallRingingContinuedOnKill,
// but the first session declines (603) once resumed: the node that went
// on with the call sends SIPp the 603 from the record, and the other
// session hears the call is off.
func TestSIPCallRingingDeclinedAfterKill(t *testing.T) {
	t.Parallel()
	kaddr, nodes := ringingCluster(t)
	users, calls, sipp := ringTwoThenKill(t, kaddr, nodes, "uac_ring_declined.xml")
	if err := calls[0].Decline(tctx(t), 603); err != nil {
		t.Fatal(err)
	}
	untilFailed(t, users[1])
	sipp.wait(t)
}

// ringingCluster is the cluster of the ringing calls that go on after a
// kill: Kamailio lets an INVITE ring 60 s (the nodes' ring timeout; a
// proxy's default is 120 s), past the kill's detection and adoption
// under load, rather than the tests' 20 s, after which SIPp would get
// Kamailio's 408, not the answer.
func ringingCluster(t *testing.T) (string, []*node) {
	t.Helper()
	return kamailioClusterWith(t, "  outbound_proxy: sip:{kamailio}\n", kamailio.Options{InviteTimer: 60000})
}

// ringTwoThenKill has SIPp (scenario) call the user, who has two
// sessions on n1, through Kamailio, kills n1 (kill -9) once the call
// rings both and is recorded, and returns once both sessions resumed
// elsewhere and a node goes on with the call, the sessions' clients and
// their calls.
func ringTwoThenKill(t *testing.T, kaddr string, nodes []*node, scenario string) ([]*client.Client, []*client.Call, *sippRun) {
	t.Helper()
	users := []*client.Client{
		dial(t, regUser+"@example.com", urls(nodes, 0), nil),
		dial(t, regUser+"@example.com", []string{nodes[0].ws(), nodes[2].ws(), nodes[1].ws()}, nil),
	}
	sipp := runSipp(t, scenario, kaddr, "-s", regUser)
	var calls []*client.Call
	for _, u := range users {
		calls = append(calls, event(t, u, client.EventIncomingCall).Call)
	}
	untilMetric(t, "jsonrtc_sip_call_records_ringing", 1, nodes[0].metrics)

	killed := time.Now()
	nodes[0].signal(syscall.SIGKILL)
	for _, u := range users {
		resumedBy(t, u, time.Now().Add(30*time.Second))
	}
	untilMetric(t, "jsonrtc_sip_calls_ringing_adopted_total", 1, nodes[1].metrics, nodes[2].metrics)
	t.Logf("ringing SIP call adopted %v after the kill", time.Since(killed).Round(time.Millisecond))
	nodes[0].wait(t, syscall.SIGKILL)
	return users, calls, sipp
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
