package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestMetricsApart: /metrics is not served on the public handler, only by
// MetricsHandler (jsonrtcd's metrics.listen); /healthz stays public.
func TestMetricsApart(t *testing.T) {
	g, _ := newGateway(t, nil)
	get := func(h http.Handler, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	if rec := get(g.Handler(), "/metrics"); rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "jsonrtc_sessions") {
		t.Fatalf("public /metrics: %d %.80q", rec.Code, rec.Body.String())
	}
	if rec := get(g.Handler(), "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("/healthz: %d", rec.Code)
	}
	if rec := get(g.MetricsHandler(), "/metrics"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "jsonrtc_sessions") {
		t.Fatalf("metrics handler: %d", rec.Code)
	}
}

// TestGuardRefusesCapAboveDescriptors: a configured total cap that would
// not leave fd_reserve descriptors free fails, naming the key.
func TestGuardRefusesCapAboveDescriptors(t *testing.T) {
	g, _ := newGateway(t, func(c *Config) { c.HTTP.MaxConns = 1 << 30 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := g.Guard(ln); err == nil || !strings.Contains(err.Error(), "http.max_conns") {
		t.Fatalf("Guard: %v", err)
	}
}

func handshake(t *testing.T, url string, h http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"jsonrtc"}, HTTPHeader: h})
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
	} else if resp == nil {
		t.Fatal(err)
	}
	return resp
}

// TestGuestCookieSecureBehindProxy: the guest cookie is Secure when the
// page came over https through a trusted TLS-terminating proxy, and
// X-Forwarded-Proto from anyone else is ignored.
func TestGuestCookieSecureBehindProxy(t *testing.T) {
	xfp := http.Header{"X-Forwarded-Proto": {"https"}}
	for _, trusted := range []bool{true, false} {
		_, url := newGateway(t, func(c *Config) {
			secured(c)
			if trusted {
				c.HTTP.TrustedProxies = []string{"127.0.0.1"}
			}
		})
		resp := handshake(t, appURL(url, "support"), xfp)
		cookies := resp.Cookies()
		if resp.StatusCode != http.StatusSwitchingProtocols || len(cookies) != 1 {
			t.Fatalf("trusted=%v: %s, cookies %v", trusted, resp.Status, cookies)
		}
		if cookies[0].Secure != trusted {
			t.Errorf("trusted proxy %v: cookie Secure %v", trusted, cookies[0].Secure)
		}
	}
}

// TestHandshakeLimitPerForwardedClient: behind a trusted proxy the
// handshake rate is per client (the rightmost untrusted X-Forwarded-For
// hop), not per proxy; a client's made-up hops to the left change nothing.
func TestHandshakeLimitPerForwardedClient(t *testing.T) {
	_, url := newGateway(t, func(c *Config) {
		secured(c)
		c.Limits.Handshakes = limits.Rate{Rate: 1, Per: time.Minute, Burst: 1}
		c.HTTP.TrustedProxies = []string{"127.0.0.0/8"}
	})
	sup := appURL(url, "support")
	from := func(xff string) int {
		return handshake(t, sup, http.Header{"X-Forwarded-For": {xff}}).StatusCode
	}
	codes := []int{from("203.0.113.1"), from("198.51.100.9, 203.0.113.1"), from("203.0.113.2")}
	if codes[0] != 101 || codes[1] != 429 || codes[2] != 101 {
		t.Fatalf("handshake codes %v, want [101 429 101]", codes)
	}
}

// TestFullRefusedBeforeUpgrade: when the gateway or an application is
// full, a handshake that can only start a new session gets HTTP 503 with
// Retry-After instead of an upgrade; one whose identity has a session
// (it may be a resume) is upgraded, and a resume at the cap succeeds.
func TestFullRefusedBeforeUpgrade(t *testing.T) {
	cases := map[string]func(*Config){
		"gateway": func(c *Config) { c.Session.MaxSessions = 1 },
		"application": func(c *Config) {
			p := c.Limits.Profiles["default"]
			p.Application.Sessions = 1
			c.Limits.Profiles["default"] = p
		},
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			_, url := newGateway(t, func(c *Config) {
				secured(c)
				p := c.Limits.Profiles["default"]
				p.Identity.Sessions = 1
				c.Limits.Profiles["default"] = p
				mod(c)
			})
			web := appURL(url, "web")
			exp := time.Now().Add(time.Hour)
			alice := bearer(token(t, "alice@example.com", exp))
			a := dial(t, web, protocol.SubprotocolJSONrtc, alice)
			a.connect("")
			resp := handshake(t, web, bearer(token(t, "bob@example.com", exp)))
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("new session while full: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
			}
			// Alice's socket dies; her session, at the identity's and the
			// gateway's cap, comes back.
			a.c.CloseNow()
			a2 := dial(t, web, protocol.SubprotocolJSONrtc, alice)
			a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","sequence":2},"header":{"action":"connect","cslr":1,"cslw":2,"csuw":1}}`)
			if r := a2.read(); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
				t.Fatalf("resume at the cap: %s", r.Marshal())
			}
			// A second new session of Alice's is refused after the upgrade
			// (it might have been a resume), with an error frame.
			a3 := dial(t, web, protocol.SubprotocolJSONrtc, alice)
			a3.write(`{"control":{"type":"request","package_type":"register","sequence":1},"header":{"action":"connect"}}`)
			if r := a3.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != 503 {
				t.Fatalf("new session of an identity at its cap: %s", r.Marshal())
			}
		})
	}
}

// TestTokenRevokedOnLogout: with jwt.revoke_on_logout, a token whose
// session lost its socket still resumes it, but once that session logs out
// (close 1000) the token opens no new session.
func TestTokenRevokedOnLogout(t *testing.T) {
	g, url := newGateway(t, func(c *Config) {
		secured(c)
		c.Auth.Applications[0].JWT.RevokeOnLogout = true
	})
	web := appURL(url, "web")
	tok := bearer(token(t, "alice@example.com", time.Now().Add(time.Hour)))
	a := dial(t, web, protocol.SubprotocolJSONrtc, tok)
	a.connect("")
	a.c.CloseNow() // a network loss, not a logout
	a2 := dial(t, web, protocol.SubprotocolJSONrtc, tok)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","sequence":2},"header":{"action":"connect","cslr":1,"cslw":2,"csuw":1}}`)
	if r := a2.read(); r.Control.SessionID != a.sid {
		t.Fatalf("resume with the same token: %s", r.Marshal())
	}
	a2.c.Close(websocket.StatusNormalClosure, "logout")
	deadline := time.Now().Add(5 * time.Second)
	for g.Stats().Sessions != 0 {
		if time.Now().After(deadline) {
			t.Fatal("session did not end on logout")
		}
		time.Sleep(5 * time.Millisecond) // the gateway's reader ends the session after the close handshake: no event to wait on
	}
	if code := handshakeStatus(t, web, tok); code != http.StatusUnauthorized {
		t.Fatalf("token after logout: HTTP %d, want 401", code)
	}
	if code := handshakeStatus(t, web, bearer(token(t, "alice@example.com", time.Now().Add(2*time.Hour)))); code != 101 {
		t.Fatalf("a new token after logout: HTTP %d", code)
	}
}

// TestHTTPErrorLogSparse: net/http's complaints, which outsiders trigger
// (a TLS handshake of garbage, say), reach the log at the 1st, 2nd, 4th,
// 8th... occurrence only.
func TestHTTPErrorLogSparse(t *testing.T) {
	var buf strings.Builder
	g := &Gateway{log: slog.New(slog.NewTextHandler(&buf, nil))}
	srv := g.HTTPServer()
	for range 10 {
		srv.ErrorLog.Printf("http: TLS handshake error from 192.0.2.1:1234: EOF")
	}
	if n := strings.Count(buf.String(), "TLS handshake error"); n != 4 {
		t.Fatalf("%d log lines for 10 errors, want 4:\n%s", n, buf.String())
	}
}
