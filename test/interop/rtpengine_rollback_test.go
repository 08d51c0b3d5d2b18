package interop

import (
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// TestRTPEngineRollback: a real rtpengine takes a browser's hold
// re-offer that SIP then refuses; Session.Rollback sends it the first
// offer and the phone's answer again, which it accepts on the same call
// and media ports: the browser's next offer, unchanged, goes to the phone
// as sendrecv on the port of the first offer.
func TestRTPEngineRollback(t *testing.T) {
	c := startRTPEngine(t)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAlways)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	web := chromeSDP(t, "chrome_offer.sdp")
	s, first, err := a.Offer(ctx, rtpengine.WebToSIP, rtpengine.Keys{CallID: "rollback@test", FromTag: "ft-r", ViaBranch: "z9hG4bK-r"}, web)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(ctx, "phone-r", phoneAnswer); err != nil {
		t.Fatal(err)
	}
	hold, err := s.OfferFrom(ctx, rtpengine.WebToSIP, strings.ReplaceAll(web, "a=sendrecv", "a=sendonly"))
	if err != nil || !strings.Contains(hold, "a=sendonly") {
		t.Fatalf("hold re-offer: %v\n%s", err, hold)
	}
	if err := s.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	again, err := s.OfferFrom(ctx, rtpengine.WebToSIP, web)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(again, "a=sendrecv") || mline(t, again, "audio") != mline(t, first, "audio") {
		t.Errorf("offer toward the phone after the rollback:\n%s\nfirst:\n%s", again, first)
	}
	if _, err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}
