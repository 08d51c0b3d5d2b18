package gateway

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTURNCredential: the TURN REST scheme as coturn checks it (the
// expected password computed apart, with Python's hmac module).
func TestTURNCredential(t *testing.T) {
	user, pass := turnCredential("0123456789abcdef-secret", "alice@example.com", time.Unix(1800000000, 0))
	if user != "1800000000:alice@example.com" || pass != "ZGec5GQlZGuTtKZ542eoe316HYI=" {
		t.Fatalf("credential %q %q", user, pass)
	}
}

// TestTURNFor: a page gets a credential of its own identity, good for
// web.turn.ttl, only when it authenticates for the application it names;
// none without web.turn.
func TestTURNFor(t *testing.T) {
	g, _ := newGateway(t, func(c *Config) {
		secured(c)
		c.Web.TURN = TURNConfig{URLs: []string{"turn:127.0.0.1:3478"}, Secret: "0123456789abcdef-secret", TTL: Duration(time.Hour)}
	})
	for _, tc := range []struct {
		name, app, tok string
		ok             bool
	}{
		{"token", "web", token(t, "alice@example.com", time.Now().Add(time.Hour)), true},
		{"no token", "web", "", false},
		{"expired token", "web", token(t, "alice@example.com", time.Now().Add(-time.Hour)), false},
		{"no application", "", "", false},
		{"guest", "support", "", true},
		{"unknown application", "nope", "", false},
	} {
		r := httptest.NewRequest("GET", "/config.json?app="+tc.app, nil)
		if tc.tok != "" {
			r.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		s, ok := g.TURNFor(r)
		if ok != tc.ok {
			t.Errorf("%s: credential given %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		exp, ident, _ := strings.Cut(s.Username, ":")
		n, _ := strconv.ParseInt(exp, 10, 64)
		if (ident != "alice@example.com" && !strings.HasSuffix(ident, "@guest.example.com")) || time.Until(time.Unix(n, 0)) < 59*time.Minute || time.Until(time.Unix(n, 0)) > time.Hour || s.URLs[0] != "turn:127.0.0.1:3478" {
			t.Errorf("%s: %+v", tc.name, s)
		}
		if u, pass := turnCredential("0123456789abcdef-secret", ident, time.Unix(n, 0)); u != s.Username || pass != s.Credential {
			t.Errorf("%s: password %q, want %q", tc.name, s.Credential, pass)
		}
	}
	g2, _ := newGateway(t, nil)
	if _, ok := g2.TURNFor(httptest.NewRequest("GET", "/config.json", nil)); ok {
		t.Error("a credential without web.turn")
	}
}
