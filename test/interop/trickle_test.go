package interop

import (
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
)

// Trickle ICE toward SIP (RFC 8840) and reliable early media toward a
// SIP caller (RFC 3262), through Kamailio, with the Go client as the web
// side.

// trickleOffer is offer with ICE credentials (session level) and a mid,
// as a browser's offer has them.
var trickleOffer = strings.Replace(offer, "t=0 0\r\n", "t=0 0\r\na=ice-ufrag:wEbU\r\na=ice-pwd:wEbPasswordwEbPassword00\r\n", 1) + "a=mid:0\r\n"

const (
	webCand1 = "a=candidate:1 1 udp 2122260223 192.0.2.10 50000 typ host"
	webCand2 = "a=candidate:2 1 udp 1686052607 198.51.100.7 50001 typ srflx raddr 192.0.2.10 rport 50000"
)

// A SIP peer that announced trickle-ice gets the web caller's candidates
// in an INFO (Info-Package trickle-ice, application/trickle-ice-sdpfrag,
// the offer's m= line and credentials); its own INFO reaches the web
// side as a trickle message.
func TestWebCallTrickleInfo(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_trickle.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), trickleOffer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if err := out.Trickle(ctxT(t), "a=mid:0\r\n"+webCand1+"\r\n"+webCand2+"\r\na=end-of-candidates\r\n"); err != nil {
		t.Fatal(err)
	}
	ev := webExpect(t, a, client.CallTrickle)
	if !strings.HasPrefix(ev.Candidates, "a=mid:0\r\na=candidate:7 1 UDP 2130706431 ") ||
		!strings.HasSuffix(ev.Candidates, "typ host\r\na=end-of-candidates\r\n") {
		t.Fatalf("candidates from SIP %q", ev.Candidates)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// A SIP peer without trickle-ice gets no INFO: the candidates are folded
// into the web caller's next re-offer, where its SDP lacks them.
func TestWebCallTrickleFolded(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	uas := startSipp(t, "uas_notrickle.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), trickleOffer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if err := out.Trickle(ctxT(t), "a=mid:0\r\n"+webCand1+"\r\na=end-of-candidates\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := out.ReOffer(ctxT(t), strings.Replace(trickleOffer, "a=sendrecv", "a=sendonly", 1)); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallReOfferAnswered); ev.Code != 200 {
		t.Fatalf("re-offer answered %d", ev.Code)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// Web early media to a SIP caller that supports 100rel goes as a
// reliable 183 (Require: 100rel, RSeq); the web answer's 200 waits for
// the caller's PRACK, which the gateway answers.
func TestWebIncomingReliableEarlyMedia(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	a := w.alice(t, nil)
	uac := startSipp(t, "uac_100rel.xml", k.Addr)
	in := webNext(t, a, client.EventIncomingCall)
	if err := in.Call.EarlyMedia(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished) // ACK -> complete
	webExpect(t, a, client.CallEnded)       // BYE -> shutdown
	uac.expectSuccess(t)
}

// The same for a call the gateway received: its INFO goes from the
// dialog's callee side, over the route set the INVITE recorded.
func TestWebIncomingTrickleInfo(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	a := w.alice(t, nil)
	uac := startSipp(t, "uac_trickle.xml", k.Addr)
	in := webNext(t, a, client.EventIncomingCall)
	if err := in.Call.Answer(ctxT(t), trickleOffer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished)
	if err := in.Call.Trickle(ctxT(t), "a=mid:0\r\n"+webCand1+"\r\n"); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEnded)
	uac.expectSuccess(t)
}
