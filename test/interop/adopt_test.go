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
	re := log[strings.LastIndex(log, "INVITE sip:"):]
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
