package interop

import (
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
)

// TestRTPEngineCallEarlyOffer: a Chrome offer to a SIPp phone through
// Kamailio and a real rtpengine; the phone answers in a reliable 183 that
// allows UPDATE, and after the PRACK the web caller holds before the
// answer: its re-offer reaches the phone as an UPDATE in the 183's early
// dialog, RTP/AVP and sendonly without ICE or DTLS (the scenario,
// uas_rtpengine_early_offer.xml, checks), and the UPDATE's 200 reaches
// the caller through rtpengine as WebRTC SDP (RFC 3311 section 5.1,
// docs/protocol.md §5.9). Then the INVITE's 200 answers the call.
func TestRTPEngineCallEarlyOffer(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	uas := startSipp(t, "uas_rtpengine_early_offer.xml", "")
	offer := chromeSDP(t, "chrome_offer.sdp")
	a, out, _ := callTo183(t, w, uas, offer)
	if err := out.Prack(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallPrack)
	if err := out.ReOffer(ctxT(t), strings.ReplaceAll(offer, "a=sendrecv", "a=sendonly")); err != nil {
		t.Fatal(err)
	}
	ev := webExpect(t, a, client.CallReOfferAnswered)
	has(t, "the UPDATE's answer", ev.SDP, append([]string{"a=recvonly"}, webRTCLines...), []string{" RTP/AVP "})
	webExpect(t, a, client.CallAnswered)
	hangUpAnchored(t, w, eng, a, out, uas)
}

// TestRTPEngineCallRetrySDES: under the auto policy a Chrome offer reaches
// a SIPp phone through Kamailio and a real rtpengine as RTP/AVP; the phone
// refuses it (488) and gets the INVITE again as RTP/SAVP with rtpengine's
// crypto on the same call (uas_rtpengine_488_sdes.xml checks both); its
// SDES answer reaches the browser as WebRTC, and the hang-up leaves
// nothing in rtpengine.
func TestRTPEngineCallRetrySDES(t *testing.T) {
	w, _, eng := startMediaGateway(t)
	a, out, uas, _, ev := callPhone(t, w, "uas_rtpengine_488_sdes.xml")
	has(t, "web answer", ev.SDP, webRTCLines, []string{" RTP/SAVP ", "a=crypto:"})
	hangUpAnchored(t, w, eng, a, out, uas)
}
