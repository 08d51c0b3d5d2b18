package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/transport/longpoll"
)

// poller is a long-poll client made of raw HTTP requests.
type poller struct {
	t      *testing.T
	url    string
	header http.Header // sent on every request
	token  string
	seq    uint64
	sid    string
	last   uint64
	ready  []*protocol.Frame // fetched, not yet read
}

// pollURL is the long-poll URL of the gateway newGateway served at wsURL.
func pollURL(wsURL string) string {
	return "http" + strings.TrimPrefix(strings.Replace(wsURL, "/ws/", "/poll/", 1), "ws")
}

func (p *poller) do(method, body string) *http.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	p.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, p.url, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	if p.token != "" {
		req.Header.Set(longpoll.HeaderToken, p.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp
}

// post sends frames; the first post (no token yet) takes the token.
func (p *poller) post(body string) *http.Response {
	p.t.Helper()
	resp := p.do(http.MethodPost, body)
	resp.Body.Close()
	if p.token == "" {
		p.token = resp.Header.Get(longpoll.HeaderToken)
	}
	return resp
}

func (p *poller) send(f *protocol.Frame) {
	p.t.Helper()
	p.seq++
	f.Control.Sequence, f.Control.SessionID, f.Control.AckSequence = p.seq, p.sid, p.last
	if resp := p.post(string(f.Marshal())); resp.StatusCode != http.StatusNoContent {
		p.t.Fatalf("POST: %s", resp.Status)
	}
}

// read returns the next server frame, polling as long as it takes.
func (p *poller) read() *protocol.Frame {
	p.t.Helper()
	for len(p.ready) == 0 {
		resp := p.do(http.MethodGet, "")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusNoContent:
			continue
		case http.StatusOK:
		default:
			p.t.Fatalf("GET: %s %s", resp.Status, body)
		}
		var batch []json.RawMessage
		if err := json.Unmarshal(body, &batch); err != nil {
			p.t.Fatalf("GET body %q: %v", body, err)
		}
		for _, b := range batch {
			f, err := protocol.Decode(b)
			if err != nil {
				p.t.Fatalf("undecodable frame %s: %v", b, err)
			}
			p.ready = append(p.ready, f)
		}
	}
	f := p.ready[0]
	p.ready = p.ready[1:]
	if f.Control.Sequence != 0 {
		p.last = f.Control.Sequence
	}
	return f
}

func (p *poller) connect(identity string) {
	p.t.Helper()
	p.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header:  protocol.Header{Action: protocol.ActionConnect, Initiator: identity, Target: identity},
	})
	r := p.read()
	if r.Control.Type != protocol.TypeResponse || r.Header.Action != protocol.ActionConnect || r.Control.SessionID == "" {
		p.t.Fatalf("connect response = %s", r.Marshal())
	}
	p.sid = r.Control.SessionID
}

func message(to, body string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header:  protocol.Header{Action: protocol.ActionSend, Target: to},
		Payload: protocol.EncodePayload(protocol.MessagePayload{ContentType: "text/plain", Body: body}),
	}
}

// TestPollRelay: a frame POSTed by a long-poll client reaches a WebSocket
// client, and the answer comes back on the held GET.
func TestPollRelay(t *testing.T) {
	_, url := newGateway(t, nil)
	a := &poller{t: t, url: pollURL(url)}
	a.connect("alice@example.com")
	if len(a.token) != 32 {
		t.Fatalf("token %q: want 128 bits in hex", a.token)
	}
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	a.send(message("bob@example.com", "over plain HTTP"))
	m := b.read()
	expect(t, m, protocol.TypeRequest, protocol.ActionSend)
	if !strings.Contains(string(m.Payload), "over plain HTTP") {
		t.Fatalf("relayed %s", m.Marshal())
	}
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200},
	})
	rep := a.read()
	expect(t, rep, protocol.TypeResponse, protocol.ActionSend)
	if rep.Header.ResponseCode != 200 {
		t.Fatalf("report %s", rep.Marshal())
	}
}

// TestPollTokenRequired: a request without the token, or with another,
// is refused 403 and reaches no session; so is a live token on another
// application's path.
func TestPollTokenRequired(t *testing.T) {
	_, url := newGateway(t, nil)
	a := &poller{t: t, url: pollURL(url)}
	a.connect("alice@example.com")
	for _, c := range []struct {
		name, token, url, method string
	}{
		{"no token GET", "", a.url, http.MethodGet},
		{"wrong token GET", strings.Repeat("0", 32), a.url, http.MethodGet},
		{"wrong token POST", a.token[:31] + "x", a.url, http.MethodPost},
		{"session id as token", a.sid, a.url, http.MethodGet},
		{"other path", a.token, strings.Replace(a.url, "/webrtc/test", "/webrtc/other", 1), http.MethodGet},
	} {
		x := &poller{t: t, url: c.url, token: c.token}
		resp := x.do(c.method, `{"control":{"type":"request","package_type":"register"}}`)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403", c.name, resp.Status)
		}
	}
}

// TestPollSecondGetEndsFirst: one held GET per connection; a new one
// ends the old with 409. Whichever of two GETs the gateway sees first
// is the one ended; the other is held for longpoll.hold and gets 204.
func TestPollSecondGetEndsFirst(t *testing.T) {
	_, url := newGateway(t, func(c *Config) { c.LongPoll.Hold = Duration(time.Second) })
	a := &poller{t: t, url: pollURL(url)}
	a.connect("alice@example.com")
	codes := make(chan int, 2)
	for range 2 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
			req.Header.Set(longpoll.HeaderToken, a.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	got := map[int]int{}
	got[<-codes]++
	got[<-codes]++
	if got[http.StatusConflict] != 1 || got[http.StatusNoContent] != 1 {
		t.Fatalf("two GETs answered %v; want one 409 and one 204", got)
	}
}

// TestPollTooLarge: a frame over websocket.max_frame_bytes, or a batch
// over longpoll.max_batch, is refused 413 before it reaches the session.
func TestPollTooLarge(t *testing.T) {
	_, url := newGateway(t, func(c *Config) { c.WebSocket.MaxFrameBytes = 1024; c.LongPoll.MaxBatch = 2 })
	a := &poller{t: t, url: pollURL(url)}
	big := string(message("bob@example.com", strings.Repeat("x", 2048)).Marshal())
	if resp := a.post(big); resp.StatusCode != http.StatusRequestEntityTooLarge || a.token != "" {
		t.Fatalf("oversized connect: %s, token %q", resp.Status, a.token)
	}
	a.connect("alice@example.com")
	if resp := a.post(big); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized frame: %s", resp.Status)
	}
	small := string(message("bob@example.com", "x").Marshal())
	if resp := a.post("[" + small + "," + small + "," + small + "]"); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("batch of 3: %s", resp.Status)
	}
}

// TestPollResumeMovesTransport: a session on WebSocket resumes over
// long-poll (the socket is closed 4000 and the frame it missed comes on
// the GET), then back over WebSocket (the poller gets close 4000).
func TestPollResumeMovesTransport(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	b.send(message("alice@example.com", "one"))
	b.pingPong()
	resume := func(cslr uint64) *protocol.Frame {
		f := resumeConnect("alice@example.com", cslr)
		f.Control.SessionID = a.sid
		return f
	}
	// Alice has not read "one": it is resent on the poll.
	p := &poller{t: t, url: pollURL(url), seq: a.seq, sid: a.sid}
	p.seq--
	p.send(resume(1))
	if r := p.read(); r.Header.Action != protocol.ActionConnect || r.Control.SessionID != a.sid {
		t.Fatalf("resume over long-poll: %s", r.Marshal())
	}
	if m := p.read(); !strings.Contains(string(m.Payload), `"one"`) {
		t.Fatalf("resent %s", m.Marshal())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		// It may have had "one" before it was replaced.
		_, _, err := a.c.Read(ctx)
		if err == nil {
			continue
		}
		if websocket.CloseStatus(err) != 4000 {
			t.Fatalf("replaced socket: %v", err)
		}
		break
	}
	// And back: the poller's next GET carries the close.
	a2 := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a2.sid, a2.seq, a2.last = a.sid, p.seq, p.last
	a2.seq--
	a2.send(resume(p.last))
	if r := a2.read(); r.Header.Action != protocol.ActionConnect || r.Control.SessionID != a.sid {
		t.Fatalf("resume over WebSocket: %s", r.Marshal())
	}
	resp := p.do(http.MethodGet, "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(longpoll.HeaderCloseCode) != "4000" {
		t.Fatalf("replaced poller: %s, close %q", resp.Status, resp.Header.Get(longpoll.HeaderCloseCode))
	}
	b.send(message("alice@example.com", "two"))
	if m := a2.read(); !strings.Contains(string(m.Payload), `"two"`) {
		t.Fatalf("after moving back: %s", m.Marshal())
	}
}

// TestPollOrigin: a foreign Origin is refused 403, before any
// authentication; an allowed one gets CORS headers with credentials.
func TestPollOrigin(t *testing.T) {
	_, url := newGateway(t, func(c *Config) { c.WebSocket.AllowedOrigins = []string{"app.example.com"} })
	for origin, want := range map[string]int{"https://evil.example.net": http.StatusForbidden, "https://app.example.com": http.StatusNoContent} {
		req, _ := http.NewRequest(http.MethodOptions, pollURL(url), nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %s, want %d", origin, resp.Status, want)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); (want == http.StatusNoContent) != (got == origin) {
			t.Errorf("%s: Access-Control-Allow-Origin %q", origin, got)
		}
	}
}

// TestPollIdleIsSocketLoss: a poller that stops polling loses its
// connection after longpoll.idle_timeout, but not its session, which a
// resume over WebSocket takes back.
func TestPollIdleIsSocketLoss(t *testing.T) {
	lost := make(chan string, 1)
	g, url := newGateway(t, func(c *Config) { c.LongPoll.IdleTimeout = Duration(time.Second) })
	g.onSocketLost = func(s *Session) { lost <- s.id }
	a := &poller{t: t, url: pollURL(url)}
	a.connect("alice@example.com")
	select {
	case id := <-lost:
		if id != a.sid {
			t.Fatalf("lost connection of %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle long-poll connection not dropped")
	}
	if g.lookup(a.sid) == nil {
		t.Fatal("session ended with its connection")
	}
	resp := a.do(http.MethodGet, "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET with the lost connection's token: %s", resp.Status)
	}
	resumeWS(t, url, "alice@example.com", a.sid, a.seq, a.last)
}

// resumeConnect is a reconnect connect (docs/protocol.md §4.4) of
// identity, having processed the gateway's frames up to cslr.
func resumeConnect(identity string, cslr uint64) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header: protocol.Header{Action: protocol.ActionConnect, Initiator: identity, Target: identity,
			CSLR: protocol.Seq(cslr)},
	}
}

// resumeWS resumes session sid of identity on a new WebSocket, for a
// client whose last sequence was seq and that processed up to last.
func resumeWS(t *testing.T, url, identity, sid string, seq, last uint64) *peer {
	t.Helper()
	w := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	w.sid, w.seq = sid, seq-1
	w.send(resumeConnect(identity, last))
	if r := w.read(); r.Header.Action != protocol.ActionConnect || r.Control.SessionID != sid {
		t.Fatalf("resume: %s", r.Marshal())
	}
	return w
}

// TestPollAuthenticated: the opening POST is authenticated as a
// handshake is (401 without a token, the application's origins), the
// identity is the token's, and a DELETE is the logout that ends the
// session.
func TestPollAuthenticated(t *testing.T) {
	g, url := newGateway(t, secured)
	purl := pollURL(appURL(url, "web"))
	connect := `{"control":{"type":"request","package_type":"register","sequence":1},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com"}}`
	anon := &poller{t: t, url: purl}
	if resp := anon.post(connect); resp.StatusCode != http.StatusUnauthorized || anon.token != "" {
		t.Fatalf("connect without credentials: %s, token %q", resp.Status, anon.token)
	}
	foreign := &poller{t: t, url: purl, header: http.Header{"Origin": {"https://evil.example.net"}}}
	foreign.header.Set("Authorization", "Bearer "+token(t, "alice@example.com", time.Now().Add(time.Hour)))
	if resp := foreign.post(connect); resp.StatusCode != http.StatusForbidden || foreign.token != "" {
		t.Fatalf("connect from a foreign origin: %s", resp.Status)
	}
	a := &poller{t: t, url: purl, header: bearer(token(t, "alice@example.com", time.Now().Add(time.Hour)))}
	a.header.Set("Origin", "https://app.example.com")
	a.connect("alice@example.com")
	s := g.lookup(a.sid)
	if s == nil || s.identity != "alice@example.com" {
		t.Fatalf("session %+v", s)
	}
	// The token is bound to the origin that opened the connection.
	other := &poller{t: t, url: purl, token: a.token, header: http.Header{"Origin": {"https://other.example.com"}}}
	resp := other.do(http.MethodGet, "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("token from another origin: %s", resp.Status)
	}
	// A browser's same-origin GET carries no Origin: the token serves it.
	same := &poller{t: t, url: purl, token: a.token}
	resp = same.post(`{"control":{"type":"acknowledgement","package_type":"register","session_id":"` + a.sid + `","ack_sequence":1}}`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("request without an Origin (a same-origin page's): %s", resp.Status)
	}
	resp = a.do(http.MethodDelete, "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	select {
	case <-s.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("logout did not end the session")
	}
}
