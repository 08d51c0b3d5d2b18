package gateway

import (
	"context"
	"testing"
)

// TestDirectoryKnownLeavesSIPIdentitiesToSIP: an identity of the SIP
// domain that once had a web session is not Known (its calls, messages
// and watches go to SIP once its sessions are gone); a web-only one
// stays Known, so that an offline one gets 480 rather than 404.
func TestDirectoryKnownLeavesSIPIdentitiesToSIP(t *testing.T) {
	g := newSIPGateway(t)
	g.mu.Lock()
	for _, id := range []string{"carol@example.com", "guest-1@guest.invalid", "bare"} {
		g.known[id] = struct{}{}
	}
	g.mu.Unlock()
	d := directory{g}
	for id, want := range map[string]bool{
		"carol@example.com":     false, // SIP serves her once she left the web
		"guest-1@guest.invalid": true,  // only ever a web identity
		"bare":                  true,  // bare names stay web, as call routing leaves them
		"nobody@guest.invalid":  false,
	} {
		if got := d.Known(id); got != want {
			t.Errorf("Known(%q) = %v, want %v", id, got, want)
		}
	}

	// Without a SIP side every identity that had a session is Known.
	w, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Shutdown(context.Background()) })
	w.mu.Lock()
	w.known["carol@example.com"] = struct{}{}
	w.mu.Unlock()
	if !(directory{w}).Known("carol@example.com") {
		t.Error("without SIP, carol is not Known")
	}
}

// newSIPGateway returns a gateway whose sip section has a UDP listener
// and a domain, nothing else: every other key takes its default, as
// embedders who build a Config in code get them.
func newSIPGateway(t *testing.T) *Gateway {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SIP.Listen.UDP, cfg.SIP.Domain = "127.0.0.1:0", "example.com"
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	return g
}
