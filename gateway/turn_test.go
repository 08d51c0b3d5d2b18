package gateway

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
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

// iceServersOf decodes the ice_servers header of f, checking each TURN
// credential against the secret: it must be good for ttl from now.
func iceServersOf(t *testing.T, f *protocol.Frame, ttl time.Duration) []iceServer {
	t.Helper()
	e, ok := f.Header.ExtValue(extICEServers)
	if !ok {
		t.Fatalf("no %s in %s", extICEServers, f.Marshal())
	}
	var ss []iceServer
	if err := json.Unmarshal([]byte(e.Value), &ss); err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.Username == "" || !strings.HasPrefix(s.URLs[0], "turn:") {
			continue
		}
		exp, ident, _ := strings.Cut(s.Username, ":")
		n, _ := strconv.ParseInt(exp, 10, 64)
		if left := time.Until(time.Unix(n, 0)); ident != "alice@example.com" || left < ttl-time.Minute || left > ttl {
			t.Fatalf("TURN credential %q: %v left, want %v", s.Username, left, ttl)
		}
		if _, pass := turnCredential("0123456789abcdef-secret", ident, time.Unix(n, 0)); pass != s.Credential {
			t.Fatalf("TURN password %q, want %q", s.Credential, pass)
		}
	}
	return ss
}

// TestICEServers: the connect response hands the session its ICE servers
// (web.turn with a credential of its identity, good for web.turn.ttl, and
// web.ice_servers) and ice_servers_ttl; an ice_servers request gets them
// again with a fresh credential. Without either section the connect
// response has no such header, and the request is answered without.
func TestICEServers(t *testing.T) {
	_, url := newGateway(t, func(c *Config) {
		c.Web.TURN = TURNConfig{URLs: []string{"turn:127.0.0.1:3478"}, Secret: "0123456789abcdef-secret", TTL: Duration(time.Hour)}
		c.Web.ICEServers = []ICEServer{{URLs: []string{"stun:stun.example.com:3478"}}}
	})
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	r := a.connect("alice@example.com")
	ss := iceServersOf(t, r, time.Hour)
	if len(ss) != 2 || ss[0].URLs[0] != "turn:127.0.0.1:3478" || ss[1].URLs[0] != "stun:stun.example.com:3478" || ss[1].Username != "" {
		t.Fatalf("ice servers %+v", ss)
	}
	if e, _ := r.Header.ExtValue(extICEServersTTL); e.Kind != protocol.ExtNumber || e.Value != "3600" {
		t.Fatalf("%s %+v", extICEServersTTL, e)
	}
	renew := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister, CorrelationID: "c2"},
		Header:  protocol.Header{Action: protocol.ActionICEServers},
	}
	a.send(renew)
	res := a.read()
	if res.Control.Type != protocol.TypeResponse || res.Control.CorrelationID != "c2" || res.Header.ResponseCode != 200 {
		t.Fatalf("ice_servers answered %s", res.Marshal())
	}
	if ss := iceServersOf(t, res, time.Hour); len(ss) != 2 {
		t.Fatalf("renewed ice servers %+v", ss)
	}

	_, url2 := newGateway(t, nil)
	b := dial(t, url2, protocol.SubprotocolJSONrtc, nil)
	if r := b.connect("bob@example.com"); len(r.Header.Ext) != 0 {
		t.Fatalf("connect response without ICE servers configured: %s", r.Marshal())
	}
	b.send(renew)
	if res := b.read(); res.Header.ResponseCode != 200 || len(res.Header.Ext) != 0 {
		t.Fatalf("ice_servers answered %s", res.Marshal())
	}
}
