package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
)

// A browser's SDP is 3 to 6 KB: the INVITE that carries it, and the 200
// OK that carries the web side's answer, are far over the 1300 bytes of
// RFC 3261 18.1.1. These suites send Chrome's offer and answer through
// Kamailio to SIPp, which checks the whole body arrived and over which
// transport (scenarios/uas_large_*.xml, uac_large_answer.xml).

// chromeSDP reads testdata/name, written with LF, with the CRLF a
// browser sends.
func chromeSDP(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "\n", "\r\n")
	if len(s) < 2000 {
		t.Fatalf("%s is %d bytes, not a browser's", name, len(s))
	}
	return s
}

// withTCP adds a SIP TCP listener to a gateway that sends over UDP.
func withTCP(c *gateway.Config) { c.SIP.Listen.TCP = "127.0.0.1:0" }

// established starts a call from a to uas with sdp and waits until the
// web side confirmed the answer (ACK).
func established(t *testing.T, a *client.Client, uas *Sipp, sdp string) *client.Call {
	t.Helper()
	out, err := a.StartCall(ctxT(t), uasTarget(uas), sdp)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	return out
}

// reofferThenHangup re-offers sdp on out, checks the answer holds want,
// hangs up and waits for SIPp's verdict.
func reofferThenHangup(t *testing.T, a *client.Client, out *client.Call, uas *Sipp, sdp, want string) {
	t.Helper()
	if err := out.ReOffer(ctxT(t), sdp); err != nil {
		t.Fatal(err)
	}
	if ev := webExpect(t, a, client.CallReOfferAnswered); ev.Code != 200 || !strings.Contains(ev.SDP, want) {
		t.Fatalf("re-offer answer %d %q", ev.Code, ev.SDP)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// TestWebCallLargeOfferOverTCP: a web call with Chrome's 5 KB offer goes
// to Kamailio over TCP (its top Via saying so), as does its re-INVITE
// (the dialog stays where its INVITE went); the call completes.
func TestWebCallLargeOfferOverTCP(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, withTCP)
	uas := startSipp(t, "uas_large_offer.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	chrome := chromeSDP(t, "chrome_offer.sdp")
	out := established(t, a, uas, chrome)
	next := strings.Replace(chrome, " 2 IN IP4 127.0.0.1", " 3 IN IP4 127.0.0.1", 1)
	reofferThenHangup(t, a, out, uas, next, "m=video 0")
}

// TestWebReofferLargeSDPOverTCP: a call set up over UDP with a small
// offer; the re-INVITE with Chrome's offer leaves UDP for TCP, to the
// same Kamailio, in the middle of the dialog.
func TestWebReofferLargeSDPOverTCP(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, withTCP)
	uas := startSipp(t, "uas_large_reoffer.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	out := established(t, a, uas, offer)
	reofferThenHangup(t, a, out, uas, chromeSDP(t, "chrome_offer.sdp"), "m=audio")
}

// TestWebIncomingLargeAnswer: a call from SIPp over UDP answered by the
// web side with Chrome's answer. A response cannot change transport
// (RFC 3261 18.2.2): the 200 goes over UDP, fragmented, and SIPp gets it
// whole and ACKs.
func TestWebIncomingLargeAnswer(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k)
	a := w.alice(t, nil)
	uac := startSipp(t, "uac_large_answer.xml", k.Addr)
	in := webNext(t, a, client.EventIncomingCall)
	if err := in.Call.Answer(ctxT(t), chromeSDP(t, "chrome_answer.sdp")); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished) // ACK -> complete
	webExpect(t, a, client.CallEnded)       // BYE -> shutdown
	uac.expectSuccess(t)
}
