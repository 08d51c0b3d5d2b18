package interop

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// The gateway's SIP calls with media anchored in a real rtpengine
// (media.rtpengine set): the Go client sends a real Chrome offer, and
// Kamailio and SIPp are the SIP network. The SDP each side gets is
// checked; the audio itself is the browser suite's (sdk/js/e2e
// media.test.mjs).

// startMediaGateway starts rtpengine, Kamailio and a gateway that anchors
// media in that rtpengine, its media section changed by mod if any.
func startMediaGateway(t *testing.T, mod ...func(*rtpengine.Config)) (*webGW, *Kamailio, *rtpengine.Client) {
	t.Helper()
	eng, addr := startRTPEngineAt(t)
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Media = rtpengine.Config{RTPEngine: []string{addr}, Policy: rtpengine.PolicyAuto}
		for _, m := range mod {
			m(&c.Media)
		}
	})
	return w, k, eng
}

// callPhone starts a SIPp phone with scenario and has a browser (the Go
// client with Chrome's offer) call it through w; it returns the client,
// its call, the phone, the offer, and the answer the browser got.
func callPhone(t *testing.T, w *webGW, scenario string) (*client.Client, *client.Call, *Sipp, string, client.Event) {
	t.Helper()
	uas := startSipp(t, scenario, "")
	a := w.connect(t, "open@"+domain, nil)
	chrome := chromeSDP(t, "chrome_offer.sdp")
	out, err := a.StartCall(ctxT(t), uasTarget(uas), chrome)
	if err != nil {
		t.Fatal(err)
	}
	return a, out, uas, chrome, webAnswered(t, a)
}

// noMediaLeft waits until the gateway has no call left (a call's media is
// deleted before it is forgotten), then checks rtpengine has none either.
func noMediaLeft(t *testing.T, w *webGW, eng *rtpengine.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.g.WaitIdle(ctx); err != nil {
		t.Fatalf("calls left: %+v", w.g.Stats())
	}
	ids, err := eng.List(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Fatalf("rtpengine still holds %v", ids)
	}
}

// liveCalls lists rtpengine's calls.
func liveCalls(t *testing.T, eng *rtpengine.Client) []string {
	t.Helper()
	ids, err := eng.List(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestRTPEngineCallWebToPhone: a browser's call to a plain RTP phone.
// The phone gets RTP/AVP without ICE or DTLS in the INVITE and in both
// of the browser's re-offers (hold, resume), which the scenario checks;
// the browser gets WebRTC answers, and the phone's hold as a WebRTC
// offer; one rtpengine call while it lasts, none after the hang-up.
func TestRTPEngineCallWebToPhone(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	a, out, uas, chrome, ev := callPhone(t, w, "uas_rtpengine.xml")
	has(t, "web answer", ev.SDP, webRTCLines, []string{" RTP/AVP "})
	webExpect(t, a, client.CallEstablished)
	oneCall(t, eng)
	hold := strings.ReplaceAll(chrome, "a=sendrecv", "a=sendonly")
	for _, sdp := range []string{hold, chrome} {
		if err := out.ReOffer(ctxT(t), sdp); err != nil {
			t.Fatal(err)
		}
		ev := webExpect(t, a, client.CallReOfferAnswered)
		has(t, "re-offer's answer", ev.SDP, webRTCLines, nil)
	}
	// The phone holds: its RTP/AVP re-offer reaches the browser as
	// WebRTC, and the browser's answer goes back as plain RTP (the
	// scenario checks nothing of it: the ACK carries none).
	ev = webExpect(t, a, client.CallReOffer)
	has(t, "phone's re-offer", ev.SDP, append([]string{"a=sendonly"}, webRTCLines...), []string{" RTP/AVP "})
	if err := out.Answer(ctxT(t), strings.ReplaceAll(browserAnswer(t, ev.SDP), "a=sendrecv", "a=recvonly")); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished)
	hangUp(t, w, eng, out, uas)
}

// TestRTPEngineCallPhoneToWeb: a plain RTP phone calls two sessions of
// a browser user: both ring with one WebRTC offer, the winner's answer
// reaches the phone as plain RTP, the phone's BYE ends it, and rtpengine
// holds nothing after.
func TestRTPEngineCallPhoneToWeb(t *testing.T) {
	w, k, eng := startMediaGateway(t)
	a := w.alice(t, nil)
	b := w.alice(t, nil)
	uac := startSipp(t, "uac_call.xml", k.Addr)
	in := webNext(t, a, client.EventIncomingCall)
	inB := webNext(t, b, client.EventIncomingCall)
	has(t, "browser's offer", in.SDP, webRTCLines, []string{" RTP/AVP "})
	if in.SDP != inB.SDP {
		t.Errorf("the forks got different offers:\n%s\n%s", in.SDP, inB.SDP)
	}
	if err := in.Call.Answer(ctxT(t), browserAnswer(t, in.SDP)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, b, client.CallEnded)
	webExpect(t, a, client.CallEstablished)
	webExpect(t, a, client.CallEnded)
	uac.expectSuccess(t)
	noMediaLeft(t, w, eng)
}

// TestRTPEngineCallUnreachable: with rtpengine's address answering
// nothing, a browser's call fails at once with 503 and no INVITE leaves.
func TestRTPEngineCallUnreachable(t *testing.T) {
	k := startKamailio(t)
	dead := freePort(t)
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Media = rtpengine.Config{RTPEngine: []string{"127.0.0.1:" + strconv.Itoa(dead)}, Timeout: 600 * time.Millisecond, Retransmit: 200 * time.Millisecond}
	})
	a := w.connect(t, "open@"+domain, nil)
	if _, err := a.StartCall(ctxT(t), "bob@"+domain, chromeSDP(t, "chrome_offer.sdp")); err != nil {
		t.Fatal(err)
	}
	ev := webExpect(t, a, client.CallFailed)
	if ev.Code != 503 || ev.Reason != "media relay unavailable" {
		t.Fatalf("failed %d %q", ev.Code, ev.Reason)
	}
}

// webCallAnchored has a new web client call a SIPp phone playing scenario
// through w, and returns them once the call is up and eng, rtpengine,
// holds it (its only call).
func webCallAnchored(t *testing.T, w *webGW, eng *rtpengine.Client, scenario string) (*client.Client, *Sipp) {
	t.Helper()
	uas := startSipp(t, scenario, "")
	a := w.connect(t, "open@"+domain, nil)
	if _, err := a.StartCall(ctxT(t), uasTarget(uas), chromeSDP(t, "chrome_offer.sdp")); err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	oneCall(t, eng)
	return a, uas
}

// TestRTPEngineCallGatewayShutdown: the gateway shut down in the middle
// of an anchored call hangs it up and deletes its media before it closes
// its rtpengine client: rtpengine holds nothing after Shutdown returns.
func TestRTPEngineCallGatewayShutdown(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	_, uas := webCallAnchored(t, w, eng, "uas_answer.xml")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := liveCalls(t, eng); len(ids) != 0 {
		t.Fatalf("rtpengine still holds %v after Shutdown", ids)
	}
	// One BYE, answered: a second one after the first's 200 (the session's
	// end and Shutdown's hang-up racing) made SIPp count the call failed.
	uas.expectSuccess(t)
}

// TestRTPEngineCallLateOffer: the phone's re-INVITE without SDP in an
// anchored call is answered with rtpengine's plain RTP SDP (the scenario
// checks it), and the phone's new answer in its ACK (a hold) reaches the
// browser rewritten for WebRTC.
func TestRTPEngineCallLateOffer(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	uas := startSipp(t, "uas_rtpengine_nosdp.xml", "", "-key", "ackver", "2353687638", "-key", "ackdir", "sendonly")
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), chromeSDP(t, "chrome_offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	ev := webExpect(t, a, client.CallRemoteSDP)
	has(t, "phone's new answer", ev.SDP, append([]string{"a=sendonly"}, webRTCLines...), []string{" RTP/AVP "})
	webExpect(t, a, client.CallDTMF)
	hangUp(t, w, eng, out, uas)
}

// TestRTPEngineCallPrackOffer: a browser calls a plain RTP phone with
// 100rel; the phone's reliable 183 answers the INVITE's offer, and the
// browser's PRACK carries a new offer (hold), which reaches the phone as
// RTP/AVP without ICE or DTLS (the scenario checks); the phone's
// recvonly answer in the PRACK's 200 comes back to the browser as WebRTC
// in the prack's response, and again with the 200 to the INVITE, which
// has no SDP (docs/protocol.md §5.6). Nothing is left in rtpengine.
func TestRTPEngineCallPrackOffer(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	uas := startSipp(t, "uas_rtpengine_prack.xml", "")
	chrome := chromeSDP(t, "chrome_offer.sdp")
	a, out, ev := callTo183(t, w, uas, chrome)
	has(t, "183's answer", ev.SDP, webRTCLines, []string{" RTP/AVP "})
	if err := out.PrackOffer(ctxT(t), strings.ReplaceAll(chrome, "a=sendrecv", "a=sendonly")); err != nil {
		t.Fatal(err)
	}
	ev = webExpect(t, a, client.CallPrack)
	has(t, "PRACK's answer", ev.SDP, append([]string{"a=recvonly"}, webRTCLines...), []string{" RTP/AVP "})
	prackAnswer := ev.SDP
	if ev = webAnswered(t, a); ev.SDP != prackAnswer {
		t.Errorf("the 200 without SDP repeats\n%s\nnot the PRACK's answer\n%s", ev.SDP, prackAnswer)
	}
	hangUpAnchored(t, w, eng, a, out, uas)
}

// TestRTPEngineCallEndFigures: the phone hangs up a browser's call
// through a real rtpengine; the browser's shutdown carries the figures of
// the call's delete, one entry per leg, the browser's first
// (docs/protocol.md §5.8); nothing is left in rtpengine.
func TestRTPEngineCallEndFigures(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	a, _, uas, _, _ := callPhone(t, w, "uas_farbye.xml")
	webExpect(t, a, client.CallEstablished)
	ev := webExpect(t, a, client.CallEnded)
	if len(ev.Media) != 2 || ev.Media[0].Side != "web" || ev.Media[1].Side != "sip" {
		t.Fatalf("shutdown's media figures %+v, want the web leg and the sip leg", ev.Media)
	}
	uas.expectSuccess(t)
	noMediaLeft(t, w, eng)
}

// TestRTPEngineCallHangupFigures: the browser hangs up its call to a
// phone through a real rtpengine; once the media is deleted it gets the
// figures too, in a shutdown of its own (client.CallFigures), one entry
// per leg, the browser's first (docs/protocol.md §5.8).
func TestRTPEngineCallHangupFigures(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	a, out, uas, _, _ := callPhone(t, w, "uas_answer.xml")
	webExpect(t, a, client.CallEstablished)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ev := webExpect(t, a, client.CallFigures)
	if ev.Call != out || len(ev.Media) != 2 || ev.Media[0].Side != "web" || ev.Media[1].Side != "sip" {
		t.Fatalf("figures %+v of call %v, want the web leg and the sip leg of %v", ev.Media, ev.Call, out)
	}
	uas.expectSuccess(t)
	noMediaLeft(t, w, eng)
}

// TestRTPEngineCallWebToSDESPhone: a browser calls a target of
// media.sdes: the phone gets RTP/SAVP with rtpengine's a=crypto, without
// ICE or DTLS, in the INVITE and in the browser's hold (which the SIPp
// scenario checks), answers in SDES-SRTP, and the browser gets WebRTC
// answers; nothing is left in rtpengine after the hang-up.
func TestRTPEngineCallWebToSDESPhone(t *testing.T) {
	w, _, eng := startMediaGateway(t, func(c *rtpengine.Config) { c.SDES = rtpengine.Targets{domain} })
	a, out, uas, chrome, ev := callPhone(t, w, "uas_rtpengine_sdes.xml")
	has(t, "web answer", ev.SDP, webRTCLines, []string{" RTP/SAVP ", "a=crypto:"})
	webExpect(t, a, client.CallEstablished)
	if err := out.ReOffer(ctxT(t), strings.ReplaceAll(chrome, "a=sendrecv", "a=sendonly")); err != nil {
		t.Fatal(err)
	}
	ev = webExpect(t, a, client.CallReOfferAnswered)
	has(t, "hold's answer", ev.SDP, webRTCLines, []string{"a=crypto:"})
	hangUp(t, w, eng, out, uas)
}

// TestRTPEngineCallSDESPhoneToWeb: an SDES-SRTP phone (RTP/SAVP with
// a=crypto) calls a browser: the browser gets WebRTC without SDES, the
// phone an SDES answer, and the browser's hold reaches the phone as
// RTP/SAVP with crypto too (the SIPp scenario checks both; the hold went
// as RTP/AVP before, stripping the phone's crypto); the browser hangs
// up and rtpengine holds nothing after.
func TestRTPEngineCallSDESPhoneToWeb(t *testing.T) {
	w, k, eng := startMediaGateway(t)
	a := w.alice(t, nil)
	uac := startSipp(t, "uac_call_sdes.xml", k.Addr)
	in := webNext(t, a, client.EventIncomingCall)
	has(t, "browser's offer", in.SDP, webRTCLines, []string{"a=crypto:", " RTP/SAVP "})
	if err := in.Call.Answer(ctxT(t), browserAnswer(t, in.SDP)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished)
	if err := in.Call.ReOffer(ctxT(t), strings.ReplaceAll(chromeSDP(t, "chrome_offer.sdp"), "a=sendrecv", "a=sendonly")); err != nil {
		t.Fatal(err)
	}
	ev := webExpect(t, a, client.CallReOfferAnswered)
	has(t, "hold's answer", ev.SDP, webRTCLines, []string{"a=crypto:"})
	if err := in.Call.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uac.expectSuccess(t)
	noMediaLeft(t, w, eng)
}

// TestRTPEngineCallEarlyUpdate: a plain RTP phone answers the browser's
// offer in a reliable 183, and after the PRACK sends UPDATE with a new
// offer in the early dialog (RFC 3311 section 5.1; before, 481): it
// reaches the web caller through rtpengine as a WebRTC re-offer, the
// caller's answer goes back through rtpengine as the UPDATE's 200 (SIPp
// checks RTP/AVP, recvonly, no ICE or DTLS), and the 200 to the INVITE
// then completes the call.
func TestRTPEngineCallEarlyUpdate(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	uas := startSipp(t, "uas_rtpengine_early_update.xml", "")
	a, out, _ := callTo183(t, w, uas, chromeSDP(t, "chrome_offer.sdp"))
	if err := out.Prack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallPrack)
	ev := webExpect(t, a, client.CallReOffer)
	has(t, "the phone's early offer", ev.SDP, append([]string{"a=sendonly"}, webRTCLines...), []string{" RTP/AVP "})
	answer := strings.ReplaceAll(chromeSDP(t, "chrome_answer.sdp"), "a=sendrecv", "a=recvonly")
	if err := out.Answer(ctxT(t), answer); err != nil {
		t.Fatal(err)
	}
	// The UPDATE's exchange is committed without an event (no ACK
	// follows its 200); the INVITE's 200 answers the call.
	webExpect(t, a, client.CallAnswered)
	webExpect(t, a, client.CallEstablished)
	oneCall(t, eng)
	hangUp(t, w, eng, out, uas)
}

// callTo183 has a new web client call the SIPp phone uas with offer
// through w, and returns it, its call and the 183 with SDP the phone
// answered with (ringing skipped).
func callTo183(t *testing.T, w *webGW, uas *Sipp, offer string) (*client.Client, *client.Call, client.Event) {
	t.Helper()
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	ev := webNext(t, a, client.EventCall)
	for ev.CallEvent == client.CallRinging {
		ev = webNext(t, a, client.EventCall)
	}
	if ev.CallEvent != client.CallEarlyMedia || ev.Code != 183 {
		t.Fatalf("call event %v %d, want early media 183", ev.CallEvent, ev.Code)
	}
	return a, out, ev
}

// hangUpAnchored waits for a's call out to be established with its media
// in rtpengine eng (its one call), then hangs it up (hangUp).
func hangUpAnchored(t *testing.T, w *webGW, eng *rtpengine.Client, a *client.Client, out *client.Call, uas *Sipp) {
	t.Helper()
	webExpect(t, a, client.CallEstablished)
	oneCall(t, eng)
	hangUp(t, w, eng, out, uas)
}

// hangUp hangs up out, an established call to the SIPp phone uas with
// its media in rtpengine eng, and checks the phone's scenario passed and
// nothing is left in rtpengine.
func hangUp(t *testing.T, w *webGW, eng *rtpengine.Client, out *client.Call, uas *Sipp) {
	t.Helper()
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
	noMediaLeft(t, w, eng)
}

// oneCall checks that rtpengine eng holds one call.
func oneCall(t *testing.T, eng *rtpengine.Client) {
	t.Helper()
	if ids := liveCalls(t, eng); len(ids) != 1 {
		t.Fatalf("rtpengine calls %v, want one", ids)
	}
}
