package interop

import (
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
)

// startGuestGateway starts a web gateway whose only application is
// "support", for guests of domain allowed to call target.
func startGuestGateway(t *testing.T, k *Kamailio, domain, target string) *webGW {
	t.Helper()
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Auth = auth.Config{Applications: []auth.AppConfig{{
			Name: "support", Mode: auth.ModeGuest, Origins: auth.OriginConfig{AllowMissing: true},
			Guest: &auth.GuestConfig{Domain: domain, AllowedTargets: []string{target}},
		}}}
	})
	w.url = strings.Replace(w.url, "/ws/webrtc/test", "/ws/webrtc/support", 1)
	return w
}

// TestGuestDoesNotRegister: a guest costs the SIP network nothing until
// it calls: even when its identities are in the registrar's domain, its
// session registers nothing.
func TestGuestDoesNotRegister(t *testing.T) {
	w := startGuestGateway(t, startKamailio(t), domain, "sales@"+domain)
	g := w.connect(t, "", nil)
	if !strings.HasSuffix(g.Identity(), "@"+domain) {
		t.Fatalf("guest identity %q", g.Identity())
	}
	if st := w.g.SIPStats(); st.Registrations != 0 || st.Transactions != 0 {
		t.Fatalf("a guest session cost the SIP side %+v", st)
	}
}

// TestGuestTransferRefused: a guest of a click-to-call application may
// call the SIPp UAS, but a blind transfer of that call to a premium
// number is refused with 403 and no REFER reaches the SIP side (SIPp,
// which expects only the BYE, would fail on one).
func TestGuestTransferRefused(t *testing.T) {
	k := startKamailio(t)
	uas := startSipp(t, "uas_answer.xml", "")
	w := startGuestGateway(t, k, "guest.example.com", uasTarget(uas))
	g := w.connect(t, "", nil)
	if !strings.HasPrefix(g.Identity(), "guest-") {
		t.Fatalf("guest identity %q", g.Identity())
	}
	out, err := g.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, g)
	webExpect(t, g, client.CallEstablished)
	for _, to := range []string{"tel:+19005550100", "sip:+19005550100@" + domain} {
		if code, err := out.Transfer(ctxT(t), to); code != 403 || err == nil {
			t.Fatalf("guest transfer to %s: %d %v, want 403", to, code, err)
		}
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}
