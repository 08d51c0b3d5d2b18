package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/transport/longpoll"
)

// staleResume is the connect of a client that connected (alice's
// sequence 1) and has processed the connect response, on every socket
// of these tests: nothing moves between the connect it gave up on and
// the one it went on with, so the claims (cslr, csuw) cannot tell them
// apart (docs/protocol.md §4.4 "Stale connects").
func staleResume(sid string) string {
	return `{"control":{"type":"request","package_type":"register","session_id":"` + sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`
}

// TestStaleConnectKeepsNewerSocket: a client opened a socket and sent
// its resume on it, gave up waiting for the answer, and resumed on a
// new socket; the first connect is read late. It closes with 1013 and
// the new socket keeps the session. Taken, it closed the socket the
// client went on with with 4000 "replaced", which ends the session at
// the client (TestChaosMixed: sends failed with 4000). A resume on a
// newer socket still takes the session over at once.
func TestStaleConnectKeepsNewerSocket(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	stale := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	live := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	live.sid, live.seq = a.sid, 1
	live.write(staleResume(a.sid))
	if r := live.read(); r.Header.Action != protocol.ActionConnect || r.Control.SessionID != a.sid {
		t.Fatalf("resume: %s", r.Marshal())
	}
	if code := a.closeCode(); code != 4000 {
		t.Fatalf("the socket a newer one resumed from closed with %d, want 4000", code)
	}
	stale.write(staleResume(a.sid))
	if code := stale.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("a stale connect closed with %d, want 1013", code)
	}
	liveGoesOn(t, g, url, a.sid, func(f *protocol.Frame) { live.send(f) }, live.read)
	live.pingPong() // still open

	// A newer socket, the client's next, takes it over at once.
	next := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	next.write(strings.NewReplacer(`"cslr":1,"cslw":2,"csuw":1`, fmt.Sprintf(`"cslr":%d,"cslw":3,"csuw":2`, live.last)).Replace(staleResume(a.sid)))
	if r := next.read(); r.Header.Action != protocol.ActionConnect || r.Control.SessionID != a.sid {
		t.Fatalf("a resume on a newer socket: %s", r.Marshal())
	}
	if code := live.closeCode(); code != 4000 {
		t.Fatalf("the replaced socket closed with %d, want 4000", code)
	}
}

// TestStaleConnectKeepsNewerPoll: the same with the client gone on to
// long-poll: the older WebSocket's late connect leaves the long-poll
// connection attached, with no close on its next GET.
func TestStaleConnectKeepsNewerPoll(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	stale := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	p := &poller{t: t, url: pollURL(url), sid: a.sid, seq: 1}
	if resp := p.post(staleResume(a.sid)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("resume POST: %s", resp.Status)
	}
	if r := p.read(); r.Header.Action != protocol.ActionConnect || r.Control.SessionID != a.sid {
		t.Fatalf("resume over long-poll: %s", r.Marshal())
	}
	stale.write(staleResume(a.sid))
	if code := stale.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("a stale connect closed with %d, want 1013", code)
	}
	liveGoesOn(t, g, url, a.sid, p.send, p.read)
}

// TestStalePollConnectKeepsNewerSocket: a long-poll connect that
// arrived before the client's next socket opened, served after that
// socket resumed (its POST's handler slow), closes with 1013 (on its
// GET) and leaves the WebSocket attached.
func TestStalePollConnectKeepsNewerSocket(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	// What servePoll does with the opening POST, up to its handshake.
	born := g.births.Add(1)
	scope := strings.TrimPrefix(pollURL(url), "http://")
	scope = scope[strings.Index(scope, "/"):]
	c := g.polls.Open("127.0.0.1:1", scope)
	if err := c.Deliver(context.Background(), [][]byte{[]byte(staleResume(a.sid))}); err != nil {
		t.Fatal(err)
	}
	live := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	live.sid, live.seq = a.sid, 1
	live.write(staleResume(a.sid))
	if r := live.read(); r.Header.Action != protocol.ActionConnect || r.Control.SessionID != a.sid {
		t.Fatalf("resume: %s", r.Marshal())
	}
	g.serveConn(c, nil, netip.MustParseAddr("127.0.0.1"), born) // returns once refused
	stale := &poller{t: t, url: pollURL(url), token: c.Token()}
	resp := stale.do(http.MethodGet, "")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get(longpoll.HeaderCloseCode); got != "1013" {
		t.Fatalf("the stale long-poll connection: %s %q, close %q, want 1013", resp.Status, body, got)
	}
	liveGoesOn(t, g, url, a.sid, func(f *protocol.Frame) { live.send(f) }, live.read)
	live.pingPong()
}

// liveGoesOn checks that session sid is alive on the link its client
// went on with: a message sent on it (send) reaches bob, and bob's
// answer comes back on it (read).
func liveGoesOn(t *testing.T, g *Gateway, url, sid string, send func(*protocol.Frame), read func() *protocol.Frame) {
	t.Helper()
	if g.lookup(sid) == nil {
		t.Fatal("the session ended")
	}
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	send(message("bob@example.com", "still here"))
	m := b.read()
	expect(t, m, protocol.TypeRequest, protocol.ActionSend)
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200},
	})
	if r := read(); r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
		t.Fatalf("the report on the live link: %s", r.Marshal())
	}
}

// BenchmarkResume: what a resume on one node costs its client, from
// the new socket's dial to the connect response: one session resumed
// on a new WebSocket per iteration while its previous socket is still
// open (a Wi-Fi blip the gateway has not noticed). Reports p50/p99.
func BenchmarkResume(b *testing.B) {
	_, url := newGateway(b, nil)
	ctx := context.Background()
	open := func(frame string) (*websocket.Conn, *protocol.Frame) {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc}})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
			b.Fatal(err)
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			b.Fatal(err)
		}
		f, err := protocol.Decode(data)
		if err != nil || f.Header.ResponseCode != 200 {
			b.Fatalf("connect answered %s (%v)", data, err)
		}
		return c, f
	}
	prev, r := open(`{"control":{"type":"request","package_type":"register","sequence":1},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com"}}`)
	sid, last := r.Control.SessionID, r.Control.Sequence
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		c, r := open(fmt.Sprintf(`{"control":{"type":"request","package_type":"register","session_id":"%s","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","cslr":%d,"cslw":2,"csuw":1},"payload":{}}`, sid, last))
		lat = append(lat, time.Since(start))
		if r.Control.SessionID != sid {
			b.Fatalf("resume answered %s", r.Marshal())
		}
		// Acknowledged, so that the connect responses do not fill the
		// window; the next resume names it.
		last = r.Control.Sequence
		c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"control":{"type":"acknowledgement","ack_sequence":%d}}`, last)))
		prev.CloseNow()
		prev = c
	}
	b.StopTimer()
	prev.CloseNow()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
