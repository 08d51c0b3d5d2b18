package interop

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/sipgw"
)

// TestAdoptedDialogBye: gateway A calls SIPp through Kamailio, which
// record-routes the INVITE; A releases the call and stops (a node that
// is gone) and gateway B, on another port, adopts the dialog's state.
// B's target refresh (a re-INVITE: SIPp allows no UPDATE) goes through
// Kamailio's route with B's Contact; SIPp sends an INFO (a DTMF digit)
// and its BYE to that Contact through the route set, Kamailio relays
// them to B, and B's call reports the digit and ends as the peer's BYE.
// On the wire, at SIPp: the re-INVITE carries B's
// Contact, the dialog's next CSeq and the o= version bumped.
func TestAdoptedDialogBye(t *testing.T) {
	k := startKamailio(t)
	a := newGateway(t, k, nil)
	uas := startSipp(t, "uas_adopted.xml", "")
	c := dial(t, a, uas.Port, sipgw.DialOptions{})
	answeredAcked(t, c)
	st := release(t, k, a, c, "uac")

	b, cb := adopt(t, k, st)
	if ev := expect(t, cb, sipgw.EventInfo); ev.Digit != "7" {
		t.Fatalf("B's INFO event: digit %q, want SIPp's 7", ev.Digit)
	}
	re := hungUp(t, k, b, cb, uas, st, "INVITE")
	o := strings.Fields(regexp.MustCompile(`o=.*`).FindString(st.LocalSDP))
	v, _ := strconv.ParseUint(o[2], 10, 64)
	o[2] = strconv.FormatUint(v+1, 10)
	if want := strings.Join(o, " "); !strings.Contains(re, want) {
		t.Errorf("refresh re-INVITE lacks %q:\n%s", want, re)
	}
}

// TestAdoptedIncomingDialog: SIPp calls alice through Kamailio; gateway
// A answers, releases the call and stops; gateway B adopts the dialog
// (the UAS side). SIPp allows UPDATE, so B's target refresh is an UPDATE
// without a body, over Kamailio's route, with B's Contact and the CSeq
// after the INVITE's; SIPp's BYE to that Contact reaches B.
func TestAdoptedIncomingDialog(t *testing.T) {
	k := startKamailio(t)
	a, calls := registered(t, k)
	uac := startSipp(t, "uac_adopted.xml", k.Addr)
	c := incoming(t, calls)
	if err := c.Answer(ctxT(t), []byte(offer)); err != nil {
		t.Fatal(err)
	}
	expect(t, c, sipgw.EventConfirmed)
	st := release(t, k, a, c, "uas")
	b, cb := adopt(t, k, st)
	if up := hungUp(t, k, b, cb, uac, st, "UPDATE"); strings.Contains(up, "Content-Type") {
		t.Errorf("refresh UPDATE with a body:\n%s", up)
	}
}

// release has gateway a let its call c go and stops a, as a node that
// is gone, and returns the call's dialog state: of the role, with
// Kamailio's Record-Route as its route set.
func release(t *testing.T, k *Kamailio, a *sipgw.UserAgent, c *sipgw.Call, role string) sipgw.DialogState {
	t.Helper()
	st, ok := c.Release()
	if !ok {
		t.Fatal("Release: no confirmed dialog")
	}
	if ev := ended(t, c); ev.End != sipgw.EndReleased {
		t.Fatalf("A's call ended %v, want released", ev.End)
	}
	if err := a.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st.Role != role || len(st.RouteSet) != 1 || !strings.Contains(st.RouteSet[0], k.Addr) {
		t.Fatalf("state %+v, want the %s side with Kamailio's Record-Route", st, role)
	}
	return st
}

// adopt starts gateway B at k and adopts st there.
func adopt(t *testing.T, k *Kamailio, st sipgw.DialogState) (*sipgw.UserAgent, *sipgw.Call) {
	t.Helper()
	b := newGateway(t, k, nil)
	cb, err := b.Adopt(ctxT(t), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, cb
}

// hungUp waits for SIPp's BYE to end the adopted call cb on b and for
// the scenario to pass, and returns B's target refresh (method) as SIPp
// got it, checked: B's Contact, the dialog's Call-ID, our tag, the
// CSeq after the state's, through Kamailio (the route set).
func hungUp(t *testing.T, k *Kamailio, b *sipgw.UserAgent, cb *sipgw.Call, s *Sipp, st sipgw.DialogState, method string) string {
	t.Helper()
	if ev := ended(t, cb); ev.End != sipgw.EndRemoteBye {
		t.Fatalf("B's call ended %v %d, want SIPp's BYE", ev.End, ev.Code)
	}
	s.expectSuccess(t)
	assertIdle(t, b)
	log, err := readLog(s.Dir, "*messages.log")
	if err != nil {
		t.Fatal(err)
	}
	// The last one SIPp got: the first INVITE is the call's.
	i := strings.LastIndex(log, method+" sip:")
	if i < 0 {
		t.Fatalf("no %s in SIPp's log:\n%s", method, log)
	}
	msg := oneMessage(log[i:])
	_, bport, _ := net.SplitHostPort(b.Addr("udp"))
	for _, want := range []string{"Contact: <sip:gw@127.0.0.1:" + bport, "Call-ID: " + st.CallID,
		"CSeq: " + strconv.FormatUint(uint64(st.LocalCSeq)+1, 10) + " " + method, "tag=" + st.LocalTag,
		"Via: SIP/2.0/UDP " + k.Addr} {
		if !strings.Contains(msg, want) {
			t.Errorf("refresh %s lacks %q:\n%s", method, want, msg)
		}
	}
	return msg
}

// oneMessage cuts a SIPp -trace_msg log that starts at a message to that
// message: the log puts a line of dashes between messages.
func oneMessage(log string) string {
	if j := strings.Index(log, "\n-----"); j > 0 {
		return log[:j]
	}
	return log
}
