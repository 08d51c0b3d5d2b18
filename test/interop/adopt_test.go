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
// Kamailio's route with B's Contact; SIPp sends its BYE to that Contact
// through the route set, Kamailio relays it to B, and B's call ends as
// the peer's BYE. On the wire, at SIPp: the re-INVITE carries B's
// Contact, the dialog's next CSeq and the o= version bumped.
func TestAdoptedDialogBye(t *testing.T) {
	k := startKamailio(t)
	a := newGateway(t, k, nil)
	uas := startSipp(t, "uas_adopted.xml", "")
	c := dial(t, a, uas.Port, sipgw.DialOptions{})
	answeredAcked(t, c)
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
	if len(st.RouteSet) != 1 || !strings.Contains(st.RouteSet[0], k.Addr) {
		t.Fatalf("route set %q, want Kamailio's Record-Route", st.RouteSet)
	}

	b := newGateway(t, k, nil)
	cb, err := b.Adopt(ctxT(t), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, cb, sipgw.EventInfo); ev.Digit != "7" {
		t.Fatalf("B's INFO event: digit %q, want SIPp's 7", ev.Digit)
	}
	if ev := ended(t, cb); ev.End != sipgw.EndRemoteBye {
		t.Fatalf("B's call ended %v %d, want SIPp's BYE", ev.End, ev.Code)
	}
	uas.expectSuccess(t)
	assertIdle(t, b)

	log, err := readLog(uas.Dir, "*messages.log")
	if err != nil {
		t.Fatal(err)
	}
	// The second INVITE SIPp received, and what follows it: B's target
	// refresh.
	if strings.Count(log, "INVITE sip:") < 2 {
		t.Fatalf("fewer than two INVITEs in SIPp's log, want the call's and the refresh:\n%s", log)
	}
	re := oneMessage(log[strings.LastIndex(log, "INVITE sip:"):])
	_, bport, _ := net.SplitHostPort(b.Addr("udp"))
	o := strings.Fields(regexp.MustCompile(`o=.*`).FindString(st.LocalSDP))
	v, _ := strconv.ParseUint(o[2], 10, 64)
	o[2] = strconv.FormatUint(v+1, 10)
	for _, want := range []string{"Contact: <sip:gw@127.0.0.1:" + bport, "Call-ID: " + st.CallID,
		"CSeq: " + strconv.FormatUint(uint64(st.LocalCSeq)+1, 10) + " INVITE", "tag=" + st.LocalTag, strings.Join(o, " ")} {
		if !strings.Contains(re, want) {
			t.Errorf("refresh re-INVITE lacks %q:\n%s", want, re)
		}
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
	st, ok := c.Release()
	if !ok {
		t.Fatal("Release: no confirmed dialog")
	}
	if err := a.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st.Role != "uas" || len(st.RouteSet) != 1 || !strings.Contains(st.RouteSet[0], k.Addr) {
		t.Fatalf("state %+v, want the UAS side with Kamailio's Record-Route", st)
	}

	b := newGateway(t, k, nil)
	cb, err := b.Adopt(ctxT(t), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev := ended(t, cb); ev.End != sipgw.EndRemoteBye {
		t.Fatalf("B's call ended %v %d, want SIPp's BYE", ev.End, ev.Code)
	}
	uac.expectSuccess(t)
	assertIdle(t, b)

	log, err := readLog(uac.Dir, "*messages.log")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(log, "UPDATE sip:")
	if i < 0 {
		t.Fatalf("no UPDATE in SIPp's log:\n%s", log)
	}
	up := oneMessage(log[i:])
	_, bport, _ := net.SplitHostPort(b.Addr("udp"))
	for _, want := range []string{"Contact: <sip:gw@127.0.0.1:" + bport, "Call-ID: " + st.CallID,
		"CSeq: " + strconv.FormatUint(uint64(st.LocalCSeq)+1, 10) + " UPDATE", "tag=" + st.LocalTag,
		"Via: SIP/2.0/UDP " + k.Addr} { // through Kamailio: the route set
		if !strings.Contains(up, want) {
			t.Errorf("refresh UPDATE lacks %q:\n%s", want, up)
		}
	}
}

// oneMessage cuts a SIPp -trace_msg log that starts at a message to that
// message: the log puts a line of dashes between messages.
func oneMessage(log string) string {
	if j := strings.Index(log, "\n-----"); j > 0 {
		return log[:j]
	}
	return log
}
