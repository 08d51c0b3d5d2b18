package cluster

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// sipDrainCalls is the number of SIP calls up during the drain: half
// SIPp calling web users, half web users calling SIPp.
const sipDrainCalls = 50

// TestDrainDuringSIPCalls (issue 15): a drain moves SIP calls like web
// calls. Fifty web users spread over three nodes, each registered at a
// real Kamailio, hold fifty SIP calls through it: SIPp (uac_drain.xml)
// calls the first half, the second half call a SIPp UAS (uas_drain.xml).
// n1, serving a third of them, is drained (SIGTERM) mid-call. No call
// ends: no web leg hears of one on the way to its resume on another
// node, each of n1's calls is adopted once, and SIPp sees no BYE (its
// scenarios take only the adopter's target refresh). Then every web user sends a DTMF digit: SIPp gets
// the INFO (through the new node for the moved calls), answers it and
// hangs up towards the dialog's current target; the BYE reaches every
// web user, and SIPp counts every call completed.
//
// Serial (harness_test.go): its 50 SIP calls load the machine.
func TestDrainDuringSIPCalls(t *testing.T) {
	kaddr, nodes := kamailioCluster(t, "  outbound_proxy: sip:{kamailio}\n")
	users := make([]*client.Client, sipDrainCalls)
	names := make([]string, sipDrainCalls)
	for i := range users {
		names[i] = fmt.Sprintf("d%02d", i)
		// The connect answers once the identity is registered (interwork
		// registration.go): SIPp's calls find every user.
		users[i] = dial(t, names[i]+"@example.com", urls(nodes, i%len(nodes)), nil)
	}
	half := sipDrainCalls / 2
	calls := make([]*client.Call, sipDrainCalls)

	uas := runSipp(t, "uas_drain.xml", "", "-m", strconv.Itoa(sipDrainCalls-half), "-timeout", "85s")
	target := "sip:uas-" + strconv.Itoa(uas.port) + "@example.com"
	for i := half; i < sipDrainCalls; i++ {
		out, err := users[i].StartCall(tctx(t), target, offer)
		if err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		calls[i] = out
	}
	for i := half; i < sipDrainCalls; i++ {
		callReaches(t, users[i], client.CallAnswered, 30*time.Second)
		callReaches(t, users[i], client.CallEstablished, 15*time.Second)
	}

	uac := runSipp(t, "uac_drain.xml", kaddr, "-inf", sippUsers(t, names[:half]), "-m", strconv.Itoa(half), "-l", strconv.Itoa(half),
		"-r", strconv.Itoa(half), "-timeout", "85s")
	for i := range half {
		in := event(t, users[i], client.EventIncomingCall)
		if err := in.Call.Ring(tctx(t)); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		if err := in.Call.Answer(tctx(t), answer); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		calls[i] = in.Call
	}
	for i := range half {
		callReaches(t, users[i], client.CallEstablished, 15*time.Second)
	}

	nodes[0].stop(t, syscall.SIGTERM)
	moved := 0
	for i := 0; i < sipDrainCalls; i += len(nodes) {
		resumedInCall(t, users[i], 30*time.Second)
		moved++
	}
	// Each drained call adopted once, by the node its user resumed on.
	untilMetric(t, "jsonrtc_sip_calls_adopted_total", moved, nodes[1].metrics, nodes[2].metrics)
	untilMetric(t, "jsonrtc_sip_call_adoptions_failed_total", 0, nodes[1].metrics, nodes[2].metrics)

	for i, k := range calls {
		if err := k.DTMF(tctx(t), "5", 0); err != nil {
			t.Fatalf("%s: DTMF after the drain: %v", names[i], err)
		}
	}
	for i := range users {
		callReaches(t, users[i], client.CallEnded, 30*time.Second)
	}
	uac.wait(t)
	uas.wait(t)
}
