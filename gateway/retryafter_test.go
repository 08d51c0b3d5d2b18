package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestRefusalsSayWhenToComeBack: a connect refused for now says when to
// try again: HTTP 503 at a draining or cut-off node's handshake (a
// WebSocket's and a long-poll's) carries Retry-After, 1 or 2 s, and an
// error 503 answering the connect (here "too many sessions") carries
// header.retry_after, as the registration throttle's does. The SDKs wait
// that long at least before their next attempt (docs/protocol.md §4.2).
// Before, neither said anything, and refused clients came back at the
// reconnect backoff's 250 ms.
func TestRefusalsSayWhenToComeBack(t *testing.T) {
	g, url := newGateway(t, func(c *Config) { c.Session.MaxSessions = 1 })
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header: protocol.Header{Action: protocol.ActionConnect, Initiator: "bob@example.com"}})
	r := b.read()
	if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeServiceUnavailable {
		t.Fatalf("bob's connect past max_sessions got %s", r.Marshal())
	}
	if e, ok := r.Header.ExtValue("retry_after"); !ok || e.Value != "5" {
		t.Errorf("its retry_after %q (%v), want 5: %s", e.Value, ok, r.Marshal())
	}

	for _, state := range []struct {
		name string
		set  func(on bool)
	}{
		{"draining", func(on bool) { g.draining = on }},
		{"cut off", func(on bool) { g.cutOff = on }},
	} {
		g.mu.Lock()
		state.set(true)
		g.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: a handshake got %v, %v; want 503", state.name, resp, err)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "1" && ra != "2" {
			t.Errorf("%s: a handshake's Retry-After %q, want 1 or 2", state.name, ra)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, pollURL(url), strings.NewReader(`{"control":{"type":"request","package_type":"register","sequence":1},"header":{"action":"connect"}}`))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ra := resp.Header.Get("Retry-After"); resp.StatusCode != http.StatusServiceUnavailable || (ra != "1" && ra != "2") {
			t.Errorf("%s: a long-poll connect got %s, Retry-After %q; want 503 with 1 or 2", state.name, resp.Status, ra)
		}
		cancel()
		g.mu.Lock()
		state.set(false)
		g.mu.Unlock()
	}
}
