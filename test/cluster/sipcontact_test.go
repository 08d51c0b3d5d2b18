package cluster

import (
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// TestSIPCallStaysWhenSessionMoves (issue 15): SIPp calls the web user,
// connected on n1, through Kamailio (which registers, assigns GRUUs and
// record-routes), and the user answers on n1. The user's socket is cut
// and the client resumes on n2, which takes the session over and
// registers the identity's binding with its own Contact; the call stays
// on n1, its host, alive. The user's DTMF reaches SIPp from n1; then
// SIPp's INFO (DTMF 7) and BYE, sent to the Contact of the 200, reach
// the user. Before, that Contact was the binding's GRUU, which Kamailio
// resolves to the node holding the binding, n2, where no such dialog is:
// SIPp's INFO was answered 481. An adopter's target refresh carried the
// GRUU too, so the peer's requests after an adoption went to whichever
// node the client resumed on next (the 481 once seen after an adoption).
func TestSIPCallStaysWhenSessionMoves(t *testing.T) {
	t.Parallel()
	kaddr, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	user := dial(t, regUser+"@example.com", urls(nodes, 0), nil)
	before := bindings(t, kaddr)
	if len(before) != 1 {
		t.Fatalf("bindings after the connect on n1: %v, want 1", before)
	}
	sipp := runSipp(t, "uac_session_moves.xml", kaddr, "-s", regUser)
	call := answerIncoming(t, user)

	id := user.SessionID()
	user.Kill()
	resumedBy(t, user, time.Now().Add(30*time.Second))
	if user.SessionID() != id {
		t.Fatalf("session %s became %s: not resumed", id, user.SessionID())
	}
	// n2 registered during the resume, before answering it.
	if after := bindings(t, kaddr); len(after) != 1 || after[0] == before[0] {
		t.Fatalf("bindings after the resume on n2: %v (on n1: %v), want one, not n1's", after, before)
	}
	dtmfThenSIPpHangsUp(t, user, call, sipp)
}

// TestSIPCallAdoptedThenSessionMoves: the path of the 481 once seen
// after an adoption. SIPp calls the user on n1 and n1 is killed; the
// client resumes on another node, which adopts the call: the Contact of
// its target refresh (an UPDATE) is where SIPp sends from then on. Then
// the user's socket is cut until the client resumes on the third node,
// which takes the session over and registers the binding; the call
// stays on the adopter. The user's DTMF reaches SIPp from the adopter,
// and SIPp's INFO and BYE reach the user. Before, the refresh carried
// the binding's GRUU, and SIPp's INFO went to the third node: 481.
func TestSIPCallAdoptedThenSessionMoves(t *testing.T) {
	t.Parallel()
	kaddr, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	user := dial(t, regUser+"@example.com", urls(nodes, 0), nil)
	sipp := runSipp(t, "uac_adopted_moves.xml", kaddr, "-s", regUser)
	call := answerIncoming(t, user)
	untilMetric(t, "jsonrtc_call_records", 1, nodes[0].metrics)

	nodes[0].signal(syscall.SIGKILL)
	resumedBy(t, user, time.Now().Add(30*time.Second))
	untilMetric(t, "jsonrtc_sip_calls_adopted_total", 1, nodes[1].metrics, nodes[2].metrics)
	nodes[0].wait(t, syscall.SIGKILL)
	adopter := bindings(t, kaddr)
	if len(adopter) != 1 {
		t.Fatalf("bindings after the adoption: %v, want the adopter's", adopter)
	}
	// The client goes round its URLs, the dead n1 among them: cut its
	// socket until it resumed on the node that did not adopt.
	for try := 0; ; try++ {
		if try == 4 {
			t.Fatalf("the session stays on the adopter (binding %v)", adopter)
		}
		user.Kill()
		resumedBy(t, user, time.Now().Add(30*time.Second))
		if after := bindings(t, kaddr); len(after) == 1 && after[0] != adopter[0] {
			break
		}
	}
	dtmfThenSIPpHangsUp(t, user, call, sipp)
}

// answerIncoming answers the user's incoming call and waits until it is
// established.
func answerIncoming(t *testing.T, user *client.Client) *client.Call {
	t.Helper()
	call := event(t, user, client.EventIncomingCall).Call
	if err := call.Answer(tctx(t), answer); err != nil {
		t.Fatal(err)
	}
	untilCallEvent(t, user, client.CallEstablished)
	return call
}

// dtmfThenSIPpHangsUp: the user's DTMF is SIPp's cue (scenarios
// uac_session_moves.xml, uac_adopted_moves.xml); SIPp's INFO (DTMF 7)
// and BYE then reach the user, and SIPp's scenario ends well.
func dtmfThenSIPpHangsUp(t *testing.T, user *client.Client, call *client.Call, sipp *sippRun) {
	t.Helper()
	if err := call.DTMF(tctx(t), "5", 100); err != nil {
		t.Fatal(err)
	}
	if ev := untilCallEvent(t, user, client.CallDTMF); ev.Digits != "7" {
		t.Fatalf("DTMF %q, want SIPp's 7", ev.Digits)
	}
	untilCallEvent(t, user, client.CallEnded)
	sipp.wait(t)
}
