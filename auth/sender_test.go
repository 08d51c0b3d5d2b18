package auth

import (
	"net/http/httptest"
	"testing"

	"github.com/jsonrtc/jsonrtc/routing"
)

// The application's sip_identity decides how SIP requests present its
// sessions: a configured template sets From (the default one leaves the
// AOR), assert names the identity header, guests get privacy when asked.
func TestSender(t *testing.T) {
	open := func(name string, s SIPIdentityConfig) AppConfig {
		return AppConfig{Name: name, Mode: ModeOpen, Origins: OriginConfig{AllowMissing: true}, SIPIdentity: s}
	}
	a, err := New(Config{Applications: []AppConfig{
		open("plain", SIPIdentityConfig{}),
		open("ims", SIPIdentityConfig{Template: "sip:{user}@ims.example.com", Assert: AssertAsserted}),
		open("pbx", SIPIdentityConfig{Assert: AssertPreferred}),
		{Name: "support", Mode: ModeGuest, Origins: OriginConfig{AllowMissing: true},
			SIPIdentity: SIPIdentityConfig{Assert: AssertAsserted, GuestPrivacy: true},
			Guest:       &GuestConfig{Domain: "guest.example.com", AllowedTargets: []string{"sales@example.com"}}},
	}}.WithDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	principal := func(app, initiator string) *Principal {
		p, err := a.AuthenticateApp(httptest.NewRequest("GET", "/ws/webrtc/"+app, nil), app)
		if err != nil {
			t.Fatal(err)
		}
		if initiator != "" {
			if p, err = Bind(p, initiator); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	for _, c := range []struct {
		app, initiator string
		want           routing.Sender
	}{
		{"plain", "alice@example.com", routing.Sender{}},
		{"ims", "alice@example.com", routing.Sender{From: "sip:alice@ims.example.com", AssertedIdentity: "sip:alice@ims.example.com"}},
		{"pbx", "alice@example.com", routing.Sender{PreferredIdentity: "sip:alice@example.com"}},
	} {
		if got := principal(c.app, c.initiator).Sender(); got != c.want {
			t.Errorf("%s: sender %+v, want %+v", c.app, got, c.want)
		}
	}
	g := principal("support", "")
	if s := g.Sender(); !s.Privacy || s.AssertedIdentity != "sip:"+g.Identity || s.From != "" {
		t.Errorf("guest %s: sender %+v", g.Identity, s)
	}
	var none *Principal
	if none.Sender() != (routing.Sender{}) {
		t.Error("no principal presents nothing")
	}
}
