package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/push"
	"github.com/jsonrtc/jsonrtc/transport/longpoll"
)

// proxy stands for an HTTP proxy in front of the gateway that, while
// blocking is set, refuses WebSocket upgrades. It counts what it let
// through.
type proxy struct {
	blocking  atomic.Bool
	upgrades  atomic.Int64
	pollOpens atomic.Int64
}

func (p *proxy) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			if p.blocking.Load() {
				http.Error(w, "proxy: no WebSocket here", http.StatusForbidden)
				return
			}
			p.upgrades.Add(1)
		}
		if strings.HasPrefix(r.URL.Path, "/poll/") && r.Method == http.MethodPost && r.Header.Get(longpoll.HeaderToken) == "" {
			p.pollOpens.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// startProxied runs a gateway behind a proxy.
func startProxied(t *testing.T, mod func(*gateway.Config)) (*gateway.Gateway, *proxy, string) {
	t.Helper()
	g := newGateway(t, mod)
	p := &proxy{}
	srv := httptest.NewServer(p.wrap(g.Handler()))
	t.Cleanup(srv.Close)
	return g, p, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/webrtc/test"
}

func longPollOnly(o *client.Options) { o.Transports = []string{client.TransportLongPoll} }

// TestLongPollCallAndMessaging: a long-poll client calls a WebSocket
// client and back, and they message each other.
func TestLongPollCallAndMessaging(t *testing.T) {
	g, _, url := startProxied(t, nil)
	a := connect(t, url, "alice@example.com", longPollOnly)
	b := connect(t, url, "bob@example.com", nil)
	out, _ := call(t, a, b)
	if err := out.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, b, client.CallEnded)
	_, in := call(t, b, a)
	if err := in.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, b, client.CallEnded)
	for _, pair := range [][2]*client.Client{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		done := make(chan int, 1)
		go func() {
			code, _ := from.Send(context.Background(), to.Identity(), "text/plain", "hi from "+from.Identity())
			done <- code
		}()
		ev := next(t, to, client.EventMessage)
		if ev.Message.Body != "hi from "+from.Identity() {
			t.Fatalf("message %+v", ev.Message)
		}
		ev.Message.Reply(ctx(t), 200)
		if code := <-done; code != 200 {
			t.Fatalf("report %d", code)
		}
	}
	if s := g.Stats(); s.Sessions != 2 || s.Calls != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestLongPollResumeAfterCut: the poller's TCP connection is cut; the
// message sent meanwhile comes after the resume, once.
func TestLongPollResumeAfterCut(t *testing.T) {
	_, _, url := startProxied(t, nil)
	a := connect(t, url, "alice@example.com", longPollOnly)
	b := connect(t, url, "bob@example.com", nil)
	sid := a.SessionID()
	a.Kill()
	next(t, a, client.EventReconnecting)
	go b.Send(context.Background(), "alice@example.com", "text/plain", "while cut")
	if ev := next(t, a, client.EventResumed); ev.SessionID != sid {
		t.Fatalf("resumed as %q, was %q", ev.SessionID, sid)
	}
	if ev := next(t, a, client.EventMessage); ev.Message.Body != "while cut" {
		t.Fatalf("message %+v", ev.Message)
	}
}

// TestTransportMoves: with both transports, a client behind a proxy that
// blocks WebSocket falls back to long-poll; when the proxy lets
// WebSocket through again, the next reconnect is a WebSocket; and back.
// B sends a numbered stream all along: A gets each message exactly once,
// in order.
func TestTransportMoves(t *testing.T) {
	_, p, url := startProxied(t, nil)
	b := connect(t, url, "bob@example.com", nil)
	p.blocking.Store(true)
	p.upgrades.Store(0)
	both := func(o *client.Options) {
		o.Transports = []string{client.TransportWebSocket, client.TransportLongPoll}
	}
	a := connect(t, url, "alice@example.com", both)
	if p.pollOpens.Load() != 1 || p.upgrades.Load() != 0 {
		t.Fatalf("opened with %d polls, %d upgrades; want the long-poll fallback", p.pollOpens.Load(), p.upgrades.Load())
	}
	const n = 60
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := b.Send(context.Background(), "alice@example.com", "text/plain", fmt.Sprint(i)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	got := 0
	receive := func(upTo int) {
		t.Helper()
		for got < upTo {
			ev := next(t, a, client.EventMessage)
			if ev.Message.Body != fmt.Sprint(got) {
				t.Fatalf("message %q, want %d", ev.Message.Body, got)
			}
			ev.Message.Reply(ctx(t), 200)
			got++
		}
	}
	receive(n / 3)
	// To WebSocket.
	p.blocking.Store(false)
	a.Kill()
	receive(2 * n / 3)
	if p.upgrades.Load() < 1 {
		t.Fatal("the reconnect did not try the WebSocket first")
	}
	// And back to long-poll.
	opens := p.pollOpens.Load()
	p.blocking.Store(true)
	a.Kill()
	receive(n)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if p.pollOpens.Load() <= opens {
		t.Fatal("the last reconnect did not fall back to long-poll")
	}
	// Nothing duplicated: nothing more comes.
	done := make(chan int, 1)
	go func() {
		code, _ := b.Send(context.Background(), "alice@example.com", "text/plain", "end")
		done <- code
	}()
	if ev := next(t, a, client.EventMessage); ev.Message.Body != "end" {
		t.Fatalf("after the stream: %q", ev.Message.Body)
	}
}

// TestLongPollKeepalive: the client's keepalive pings over long-poll are
// POSTs answered 204, the pong (docs/protocol.md §1.6), not frames: the
// gateway counts no malformed frame and sends no error for them, and a
// session whose GET is held far longer than the client's give-up keeps
// its connection. (A ping was POSTed as a frame and answered with error
// 400, whose arrival alone kept the link alive.)
func TestLongPollKeepalive(t *testing.T) {
	g, _, url := startProxied(t, nil)
	pongs := make(chan struct{}, 64)
	a := connect(t, url, "alice@example.com", func(o *client.Options) {
		longPollOnly(o)
		o.PingInterval, o.PongTimeout, o.PingGiveUp = 20*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
		o.OnFrame = func(out bool, data []byte) {
			if !out && string(data) == "pong" {
				select {
				case pongs <- struct{}{}:
				default:
				}
			}
		}
	})
	next(t, a, client.EventConnected)
	timeout := time.After(10 * time.Second)
	for n := 0; n < 20; {
		select {
		case <-pongs:
			n++
		case ev := <-a.Events():
			t.Fatalf("event during the keepalive: %v %v", ev.Kind, ev.Err)
		case <-timeout:
			t.Fatalf("%d pongs", n)
		}
	}
	if m := scrape(g); !strings.Contains(m, "jsonrtc_bad_frames_total 0\n") {
		t.Errorf("pings counted as bad frames:\n%s", grepLines(m, "bad_frames"))
	}
}

// TestStandbyWebhookWakesGoClient: a native app (the Go client) goes to
// standby with its device token; a message for it reaches the app's push
// relay as a signed webhook, the relay wakes the app (Wake), and the app
// gets the message from its resumed session.
func TestStandbyWebhookWakesGoClient(t *testing.T) {
	secret := "0123456789abcdef-relay"
	var bob atomic.Pointer[client.Client]
	woke := make(chan string, 1)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := push.VerifyWebhook([]byte(secret), r.Header, body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		woke <- string(body)
		bob.Load().Wake(r.Context())
	}))
	t.Cleanup(relay.Close)
	_, url := startGateway(t, func(c *gateway.Config) { c.Push.Webhook = gateway.WebhookConfig{URL: relay.URL, Secret: secret} })
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", func(o *client.Options) { o.AutoAcceptMessages = true })
	bob.Store(b)
	if _, err := b.Standby(ctx(t), protocol.PushChannel{Type: protocol.PushWebhook, Token: "device-1"}); err != nil {
		t.Fatal(err)
	}
	next(t, b, client.EventStandby)
	if code, err := a.Send(ctx(t), "bob@example.com", "text/plain", "wake up"); err != nil || code != 200 {
		t.Fatalf("send to the app in standby: %d, %v", code, err)
	}
	if body := <-woke; !strings.Contains(body, `"token":"device-1"`) || strings.Contains(body, "wake up") {
		t.Fatalf("webhook body %s", body)
	}
	next(t, b, client.EventResumed)
	if m := next(t, b, client.EventMessage); m.Message.Body != "wake up" {
		t.Fatalf("message %q", m.Message.Body)
	}
}
