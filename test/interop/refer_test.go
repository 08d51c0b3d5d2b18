package interop

import (
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
)

// The web user in a call with SIPp accepts SIPp's REFER (RFC 3515) and
// reports the new call: the REFER gets 202 only then, and SIPp checks
// the NOTIFYs that follow, "SIP/2.0 100 Trying" (active) then "SIP/2.0
// 200 OK" (terminated), before it hangs up as a transferor does (RFC
// 5589 section 6). The old gateway answered 202 at once and never
// notified.
func TestWebTransferredBySIP(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_refer.xml")
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	ev := webExpect(t, a, client.CallTransfer)
	if ev.ReferTo != "sip:carol@example.com" {
		t.Fatalf("transfer to %q", ev.ReferTo)
	}
	if err := out.RespondTransfer(ctxT(t), 202); err != nil {
		t.Fatal(err)
	}
	// The new call to carol would go here; its answer is reported.
	if err := out.ReportTransfer(ctxT(t), 200); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEnded)
	uas.expectSuccess(t)
}

// A web user who declines the transfer: SIPp's REFER gets the web
// user's 603, and the call goes on until the web user hangs up.
func TestWebDeclinesSIPTransfer(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_refer_rejected.xml")
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	webExpect(t, a, client.CallTransfer)
	if err := out.RespondTransfer(ctxT(t), 603); err != nil {
		t.Fatal(err)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// The web user transfers SIPp (REFER); SIPp, the transferee, accepts and
// NOTIFYs 100 then 200: the web user gets both as transfer progress, and
// the gateway ends the old call with BYE (RFC 5589 section 6).
func TestWebTransfersSIP(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_transferee.xml")
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if code, err := out.Transfer(ctxT(t), "sip:carol@example.com"); err != nil || code != 202 {
		t.Fatalf("transfer: %d %v", code, err)
	}
	for _, want := range []int{100, 200} {
		if ev := webExpect(t, a, client.CallTransferProgress); ev.Code != want {
			t.Fatalf("transfer progress %d (%s), want %d", ev.Code, ev.Reason, want)
		}
	}
	webExpect(t, a, client.CallEnded)
	uas.expectSuccess(t)
}

// A re-INVITE without SDP (a session refresh, or a peer asking for our
// offer) is answered by the gateway with the web side's current SDP:
// SIPp checks the 200 carries it, and the web side hears nothing, not
// even of the ACK, which answers with SIPp's unchanged session; the next
// thing it gets is SIPp's DTMF. The old gateway sent the web side a
// re-offer without SDP, and the 200 waited for it.
func TestSIPRefreshWithoutSDP(t *testing.T) {
	a, out, uas := webCallToUASKeys(t, "uas_reinvite_nosdp.xml", "ackver", "2353687637", "ackdir", "sendrecv")
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if ev := webExpect(t, a, client.CallDTMF); ev.Digits != "7" {
		t.Fatalf("dtmf %q", ev.Digits)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// When the ACK of that re-INVITE carries a changed session (a new o=
// version: SIPp puts us on hold), the web side gets SIPp's new
// description as message/start, the answer to its current offer.
func TestSIPLateOfferChangedAnswer(t *testing.T) {
	a, out, uas := webCallToUASKeys(t, "uas_reinvite_nosdp.xml", "ackver", "2353687638", "ackdir", "sendonly")
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	ev := webExpect(t, a, client.CallRemoteSDP)
	if !strings.Contains(ev.SDP, "2353687638") || !strings.Contains(ev.SDP, "a=sendonly") {
		t.Fatalf("remote SDP %q", ev.SDP)
	}
	webExpect(t, a, client.CallDTMF)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// A web user who never answers the transfer request: the REFER is
// refused with 480 after 32*T1 (16 s), before SIPp's own Timer F, and
// the call goes on (a 408 would end the dialog); the late answer gets
// 408.
func TestWebUnansweredSIPTransfer(t *testing.T) {
	a, out, uas := webCallToUAS(t, "uas_refer_unanswered.xml")
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	webExpect(t, a, client.CallTransfer)
	// SIPp sends DTMF once it got the 480.
	webExpect(t, a, client.CallDTMF)
	if err := out.RespondTransfer(ctxT(t), 202); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallError); ev.Code != 408 {
		t.Fatalf("late answer: %d %s", ev.Code, ev.Reason)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}
