package interop

import (
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
)

// A web SDP that does not parse never reaches the SIP network: the web
// side gets 488 with a reason naming the problem. SIPp's UAS takes one
// call and fails on any message its scenario does not expect, so a
// refused INVITE or re-INVITE that got out would fail it.
func TestWebBrokenSDPRefused(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_answer.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	broken := strings.Replace(offer, "m=audio 40000", "m=audio forty", 1)
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), broken); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallFailed); ev.Code != 488 || !strings.Contains(ev.Reason, "`forty`") {
		t.Fatalf("broken start: %d %q", ev.Code, ev.Reason)
	}
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	if ev := webAnswered(t, a); ev.Code != 200 {
		t.Fatalf("answer %d", ev.Code)
	}
	webExpect(t, a, client.CallEstablished)
	if err := out.ReOffer(ctxT(t), broken); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallReOfferFailed); ev.Code != 488 || !strings.Contains(ev.Reason, "`forty`") {
		t.Fatalf("broken re-offer: %d %q", ev.Code, ev.Reason)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}
