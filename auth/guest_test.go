package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func guestAuth(t *testing.T, secret Secret) *Authenticator {
	t.Helper()
	a, err := New(Config{Applications: []AppConfig{
		{Name: "support", Mode: ModeGuest, Origins: OriginConfig{AllowMissing: true},
			Guest: &GuestConfig{Domain: "guest.example.com", AllowedTargets: []string{"sales@example.com"}, CookieSecret: secret}},
		{Name: "other", Mode: ModeGuest, Origins: OriginConfig{AllowMissing: true},
			Guest: &GuestConfig{Domain: "guest.example.com", AllowedTargets: []string{"sales@example.com"}, CookieSecret: secret}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func guestHandshake(t *testing.T, a *Authenticator, app string, cookies ...*http.Cookie) *Principal {
	t.Helper()
	r := httptest.NewRequest("GET", "/ws/webrtc/"+app, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	p, err := a.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGuestCookieRestoresIdentity(t *testing.T) {
	a := guestAuth(t, "")
	p := guestHandshake(t, a, "support")
	if p.SetCookie == nil || !p.SetCookie.HttpOnly || p.SetCookie.Name != "jsonrtc_guest_support" {
		t.Fatalf("cookie %+v", p.SetCookie)
	}
	again := guestHandshake(t, a, "support", p.SetCookie)
	if again.Identity != p.Identity || again.SetCookie != nil {
		t.Fatalf("reconnect got %q (cookie %v), want %q", again.Identity, again.SetCookie, p.Identity)
	}
	// Tampered, foreign-application and expired cookies mint a new guest.
	bad := *p.SetCookie
	bad.Value = strings.Replace(bad.Value, ".", ".x", 1)
	if q := guestHandshake(t, a, "support", &bad); q.Identity == p.Identity {
		t.Fatal("tampered cookie accepted")
	}
	foreign := *p.SetCookie
	foreign.Name = "jsonrtc_guest_other"
	if q := guestHandshake(t, a, "other", &foreign); q.Identity == p.Identity {
		t.Fatal("another application's cookie accepted")
	}
	a.now = func() time.Time { return time.Now().Add(13 * time.Hour) }
	if q := guestHandshake(t, a, "support", p.SetCookie); q.Identity == p.Identity {
		t.Fatal("expired cookie accepted")
	}
	// Another node with another key does not know the cookie; with a
	// shared secret it does.
	if q := guestHandshake(t, guestAuth(t, ""), "support", p.SetCookie); q.Identity == p.Identity {
		t.Fatal("cookie accepted under another key")
	}
	s1, s2 := guestAuth(t, "shared-secret-0123456789"), guestAuth(t, "shared-secret-0123456789")
	p1 := guestHandshake(t, s1, "support")
	if q := guestHandshake(t, s2, "support", p1.SetCookie); q.Identity != p1.Identity {
		t.Fatal("shared secret: cookie not accepted by another node")
	}
}

// TestGuestPolicy: a guest principal carries its application's session
// policy, defaults applied; others carry none.
func TestGuestPolicy(t *testing.T) {
	p := guestHandshake(t, guestAuth(t, ""), "support")
	if p.GuestPolicy != (GuestPolicy{IdleResumeTimeout: 5 * time.Second, SessionsPerAddress: 5}) {
		t.Fatalf("default guest policy %+v", p.GuestPolicy)
	}
	a, err := New(Config{Applications: []AppConfig{
		{Name: "support", Mode: ModeGuest, Origins: OriginConfig{AllowMissing: true},
			Guest: &GuestConfig{Domain: "guest.example.com", AllowedTargets: []string{"sales@example.com"},
				IdleResumeTimeout: time.Second, SessionsPerAddress: -1}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := guestHandshake(t, a, "support"); p.GuestPolicy != (GuestPolicy{IdleResumeTimeout: time.Second, SessionsPerAddress: -1}) {
		t.Fatalf("configured guest policy %+v", p.GuestPolicy)
	}
}
