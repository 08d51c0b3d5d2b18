package gateway

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func token(t *testing.T, sub string, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://idp.example.com/", "aud": "jsonrtc", "sub": sub, "exp": exp.Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// secured configures a JWT application "web", a guest application
// "support" and a tight limits profile for guests.
func secured(c *Config) {
	c.Auth = auth.Config{Applications: []auth.AppConfig{
		{Name: "web", Mode: auth.ModeJWT,
			Origins: auth.OriginConfig{Allowed: []string{"https://app.example.com"}, AllowMissing: true},
			JWT: &auth.JWTConfig{Issuer: "https://idp.example.com/", Audience: []string{"jsonrtc"},
				Keys: []auth.KeyConfig{{Secret: testSecret}}}},
		{Name: "support", Mode: auth.ModeGuest, Limits: "guest",
			Origins: auth.OriginConfig{AllowMissing: true},
			Guest:   &auth.GuestConfig{Domain: "guest.example.com", AllowedTargets: []string{"sales@example.com"}}},
	}}
	c.Limits = limits.Config{Profiles: map[string]limits.Profile{
		"default": {Identity: limits.Quota{Frames: limits.Rate{Rate: 1000, Per: time.Second, Burst: 1000}}},
		"guest":   {Identity: limits.Quota{Frames: limits.Rate{Rate: 20, Per: time.Second, Burst: 20}}},
	}}
}

func appURL(url, app string) string {
	return strings.Replace(url, "/ws/webrtc/test", "/ws/webrtc/"+app, 1)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func handshakeStatus(t *testing.T, url string, h http.Header) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"jsonrtc"}, HTTPHeader: h})
	if err == nil {
		c.CloseNow()
		return 101
	}
	if resp == nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

func TestJWTHandshake(t *testing.T) {
	_, url := newGateway(t, secured)
	web := appURL(url, "web")
	now := time.Now()
	cases := []struct {
		name string
		h    http.Header
		want int
	}{
		{"valid", bearer(token(t, "alice@example.com", now.Add(time.Hour))), 101},
		{"no token", nil, 401},
		{"expired", bearer(token(t, "alice@example.com", now.Add(-time.Hour))), 401},
		{"garbage", bearer("x.y.z"), 401},
		{"foreign origin", http.Header{"Authorization": {"Bearer " + token(t, "alice@example.com", now.Add(time.Hour))}, "Origin": {"https://evil.example"}}, 403},
	}
	for _, c := range cases {
		if got := handshakeStatus(t, web, c.h); got != c.want {
			t.Errorf("%s: HTTP %d, want %d", c.name, got, c.want)
		}
	}
	if got := handshakeStatus(t, appURL(url, "nope"), nil); got != 404 {
		t.Errorf("unknown application: HTTP %d", got)
	}
	// The token names the identity; a contrary initiator is refused.
	a := dial(t, web, protocol.SubprotocolJSONrtc, bearer(token(t, "alice@example.com", now.Add(time.Hour))))
	a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header: protocol.Header{Action: protocol.ActionConnect, Initiator: "bob@example.com"}})
	if r := a.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != 403 {
		t.Fatalf("contrary initiator: %s", r.Marshal())
	}
	if r := a.connect(""); r.Header.Initiator != "alice@example.com" {
		t.Fatalf("identity %q", r.Header.Initiator)
	}
}

func TestStolenSessionIDWithTokens(t *testing.T) {
	_, url := newGateway(t, secured)
	web := appURL(url, "web")
	exp := time.Now().Add(time.Hour)
	a := dial(t, web, protocol.SubprotocolJSONrtc, bearer(token(t, "alice@example.com", exp)))
	a.connect("alice@example.com")
	m := dial(t, web, protocol.SubprotocolJSONrtc, bearer(token(t, "mallory@example.com", exp)))
	// Mallory even claims to be Alice in the initiator: refused outright.
	m.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":null,"csuw":null}}`)
	if r := m.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != 403 {
		t.Fatalf("claimed initiator: %s", r.Marshal())
	}
	m.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `"},"header":{"action":"connect","cslr":1,"cslw":null,"csuw":null}}`)
	r := m.read()
	if r.Control.SessionID == a.sid || r.Header.Initiator != "mallory@example.com" {
		t.Fatalf("mallory resumed alice's session: %s", r.Marshal())
	}
	a.pingPong()
}

func TestGuestTargets(t *testing.T) {
	_, url := newGateway(t, secured)
	sales := dial(t, appURL(url, "web"), protocol.SubprotocolJSONrtc, bearer(token(t, "sales@example.com", time.Now().Add(time.Hour))))
	sales.connect("")
	g := dial(t, appURL(url, "support"), protocol.SubprotocolJSONrtc, nil)
	if r := g.connect(""); !strings.HasPrefix(r.Header.Initiator, "guest-") || !strings.HasSuffix(r.Header.Initiator, "@guest.example.com") {
		t.Fatalf("guest identity %q", r.Header.Initiator)
	}
	start := func(target string) {
		g.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c" + target[:3]},
			Header:  protocol.Header{Action: protocol.ActionStart, Target: target},
			Payload: sdpPayload(sdpOffer),
		})
	}
	start("ceo@example.com")
	if r := g.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != 403 {
		t.Fatalf("guest called a forbidden target: %s", r.Marshal())
	}
	start("sales@example.com")
	expect(t, sales.read(), protocol.TypeRequest, protocol.ActionStart)
}

// TestFloodThrottled: a guest flooding frames is answered for its burst,
// then once with 503, then not at all, and closed (1008) as the flood goes
// on, while another identity's round trips go on; their latency is
// reported.
func TestFloodThrottled(t *testing.T) {
	_, url := newGateway(t, secured)
	exp := time.Now().Add(time.Hour)
	a := dial(t, appURL(url, "web"), protocol.SubprotocolJSONrtc, bearer(token(t, "alice@example.com", exp)))
	a.connect("")
	b := dial(t, appURL(url, "web"), protocol.SubprotocolJSONrtc, bearer(token(t, "bob@example.com", exp)))
	b.connect("")
	f := dial(t, appURL(url, "support"), protocol.SubprotocolJSONrtc, nil)
	f.connect("")
	t0 := time.Now()
	// The flood: 200 frames at once, against a bucket of 20 (the connect
	// took one).
	for i := 0; i < 200; i++ {
		f.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Target: "sales@example.com"}})
	}
	codes := map[int]int{}
	answered := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var closeErr error
	for {
		_, data, err := f.c.Read(ctx)
		if err != nil {
			closeErr = err
			break
		}
		r, err := protocol.Decode(data)
		if err != nil {
			t.Fatalf("undecodable answer %s", data)
		}
		answered++
		codes[r.Header.ErrorCode]++
	}
	// 1008 when the denials pile up; 1013 when the bucket let a frame
	// through after one it had dropped (that client must resume).
	if code := websocket.CloseStatus(closeErr); code != websocket.StatusPolicyViolation && code != websocket.StatusTryAgainLater {
		t.Fatalf("flooder's socket ended with %v, want close 1008 or 1013", closeErr)
	}
	// The burst, one 503 a second, and what the bucket refilled while
	// the test wrote (20 a second): far from one answer per frame.
	if most := mostAnswers(19, 20, time.Since(t0)); answered > most || codes[503] < 1 {
		t.Fatalf("flood of 200 answered %d times (%v), want at most %d with a 503", answered, codes, most)
	}
	// Meanwhile Alice and Bob message each other unhindered.
	var lat []time.Duration
	// (Within the default message burst of 20.)
	for i := 0; i < 15; i++ {
		t0 := time.Now()
		a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Target: "bob@example.com"}, Payload: []byte(`{"body":"hi"}`)})
		in := b.read()
		b.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: in.Control.CorrelationID},
			Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 200}})
		if r := a.read(); r.Header.ResponseCode != 200 {
			t.Fatalf("alice throttled: %s", r.Marshal())
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	// 15 samples have no p99: their median and maximum.
	t.Logf("flood: %v; other identities' round trip over %d samples: median %v, max %v", codes, len(lat), lat[len(lat)/2], lat[len(lat)-1])
}

func TestHandshakeRateLimit(t *testing.T) {
	_, url := newGateway(t, func(c *Config) {
		secured(c)
		c.Limits.Handshakes = limits.Rate{Rate: 2, Per: time.Minute, Burst: 2}
	})
	sup := appURL(url, "support")
	codes := []int{handshakeStatus(t, sup, nil), handshakeStatus(t, sup, nil), handshakeStatus(t, sup, nil)}
	if codes[0] != 101 || codes[1] != 101 || codes[2] != 429 {
		t.Fatalf("handshake codes %v", codes)
	}
}

// TestGuestResumes: a guest whose socket dies comes back with the cookie
// the handshake gave it, so it keeps its identity and resumes its session.
func TestGuestResumes(t *testing.T) {
	_, url := newGateway(t, secured)
	sup := appURL(url, "support")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, sup, &websocket.DialOptions{Subprotocols: []string{"jsonrtc"}})
	if err != nil {
		t.Fatal(err)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly {
		t.Fatalf("handshake cookies %v", cookies)
	}
	g := &peer{t: t, c: c}
	t.Cleanup(func() { c.CloseNow() })
	id := g.connect("").Header.Initiator
	c.CloseNow()
	h := http.Header{}
	h.Add("Cookie", cookies[0].Name+"="+cookies[0].Value)
	g2 := dial(t, sup, protocol.SubprotocolJSONrtc, h)
	g2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + g.sid + `"},"header":{"action":"connect","cslr":1,"cslw":2,"csuw":1}}`)
	r := g2.read()
	if r.Control.SessionID != g.sid || r.Header.Initiator != id {
		t.Fatalf("guest did not resume: %s", r.Marshal())
	}
}
