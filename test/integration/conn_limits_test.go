package integration

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/transport/connlimit"
)

// Loopback aliases: on Linux all of 127/8 is local, so a dialer bound to
// 127.0.0.x is a distinct source address without any set-up.
const (
	attackerAddr = "127.0.0.2"
	clientAddr   = "127.0.0.3"
)

func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
}

// keepAlive opens a connection from src, gets /healthz on it and keeps it
// open (an idle keep-alive connection, as the attack did). It returns nil
// when the gateway closed the connection instead of answering.
func keepAlive(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	c, err := dialerFrom(src).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		c.Close()
		return nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection neither answered nor refused")
		}
		c.Close()
		return nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
	c.SetDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return c
}

// holdUntilRefused opens keep-alive connections from src until one is
// refused (at most limit) and returns those it holds.
func holdUntilRefused(t *testing.T, addr, src string, limit int) []net.Conn {
	t.Helper()
	var held []net.Conn
	for range limit {
		c := keepAlive(t, addr, src)
		if c == nil {
			return held
		}
		held = append(held, c)
	}
	t.Fatalf("%d connections from %s, none refused", limit, src)
	return nil
}

// waitOpen waits for the listener's open count to reach n: connections
// are released by the server's goroutines after the client's close.
func waitOpen(t *testing.T, l *connlimit.Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("open connections %d, want %d", l.Open(), n)
		}
		time.Sleep(5 * time.Millisecond) // polling a count the server's goroutines change: no event to wait on
	}
}

// scrape returns the gateway's metrics text.
func scrape(g *gateway.Gateway) string {
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// connectFrom connects identity from the source address src; b-side
// clients accept messages by themselves.
func connectFrom(t *testing.T, addr, src, identity string) *client.Client {
	t.Helper()
	return connect(t, "ws://"+addr+"/ws/webrtc/test", identity, func(o *client.Options) {
		o.NetDial = dialerFrom(src).DialContext
		o.AutoAcceptMessages = true
	})
}

// roundTrips sends n messages from a to b (which accepts them) and
// returns the round trips, sorted.
func roundTrips(t *testing.T, a, b *client.Client, n int) []time.Duration {
	t.Helper()
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if code, err := a.Send(ctx(t), b.Identity(), "text/plain", "hi"); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat
}

func drain(c *client.Client) {
	go func() {
		for range c.Events() {
		}
	}()
}

// TestConnCapPerAddress: one address holds idle keep-alive connections
// until refused at its cap; a client on another address still completes
// a handshake, a call and messages, and its round trip is reported.
// Closed connections, WebSockets included, give their slots back.
func TestConnCapPerAddress(t *testing.T) {
	const perAddr = 20
	g, l, addr := startGuardedGateway(t, func(c *gateway.Config) {
		c.HTTP.MaxConnsPerAddress = perAddr
		c.HTTP.MaxConns = 200
	})
	held := holdUntilRefused(t, addr, attackerAddr, 10*perAddr)
	if len(held) != perAddr {
		t.Fatalf("attacker holds %d connections, want %d", len(held), perAddr)
	}
	a := connectFrom(t, addr, clientAddr, "alice@example.com")
	b := connectFrom(t, addr, clientAddr, "bob@example.com")
	call(t, a, b)
	drain(b)
	lat := roundTrips(t, a, b, 200)
	t.Logf("attacker holding %d connections (cap %d per address): other address's message round trip p50 %v p99 %v",
		len(held), perAddr, lat[len(lat)/2], lat[len(lat)*99/100])
	if m := scrape(g); !strings.Contains(m, `jsonrtc_http_connections_refused_total{reason="address"} 1`) {
		t.Fatalf("refusal not counted:\n%s", grepLines(m, "jsonrtc_http_connections"))
	}
	// Slots come back: the attacker's on close, and a WebSocket's when
	// it closes (net/http no longer tracks a hijacked connection).
	waitOpen(t, l, perAddr+2)
	for _, c := range held {
		c.Close()
	}
	waitOpen(t, l, 2)
	a.Close()
	waitOpen(t, l, 1)
	if c := keepAlive(t, addr, attackerAddr); c == nil {
		t.Fatal("address still refused after closing its connections")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestConnCapTotal: with the gateway at its total cap, new connections
// from anywhere are refused at accept and counted, while the sessions it
// already has go on; when connections close, newcomers get in again.
func TestConnCapTotal(t *testing.T) {
	const total = 10
	g, l, addr := startGuardedGateway(t, func(c *gateway.Config) {
		c.HTTP.MaxConns = total
		c.HTTP.MaxConnsPerAddress = -1
	})
	a := connectFrom(t, addr, clientAddr, "alice@example.com")
	b := connectFrom(t, addr, clientAddr, "bob@example.com")
	drain(b)
	held := holdUntilRefused(t, addr, attackerAddr, 10*total)
	if len(held) != total-2 {
		t.Fatalf("attacker holds %d connections, want %d", len(held), total-2)
	}
	if c := keepAlive(t, addr, clientAddr); c != nil {
		t.Fatal("a connection over the total cap was served")
	}
	lat := roundTrips(t, a, b, 50)
	t.Logf("gateway at its cap of %d connections: existing sessions' message round trip p50 %v p99 %v",
		total, lat[len(lat)/2], lat[len(lat)*99/100])
	if m := scrape(g); !strings.Contains(m, `jsonrtc_http_connections_refused_total{reason="total"} 2`) {
		t.Fatalf("refusals not counted:\n%s", grepLines(m, "jsonrtc_http_connections"))
	}
	for _, c := range held {
		c.Close()
	}
	waitOpen(t, l, 2)
	c := connectFrom(t, addr, clientAddr, "carol@example.com")
	if code, err := c.Send(ctx(t), b.Identity(), "text/plain", "in again"); err != nil || code != 200 {
		t.Fatalf("send after the flood: %d %v", code, err)
	}
}

// TestIdleKeepAliveClosed: an idle keep-alive connection (the attack's
// GET /healthz, then nothing) is closed after http.idle_timeout, while a
// WebSocket, hijacked from net/http, outlives the read, write and idle
// timeouts.
func TestIdleKeepAliveClosed(t *testing.T) {
	g, l, addr := startGuardedGateway(t, func(c *gateway.Config) {
		c.HTTP.IdleTimeout = gateway.Duration(time.Second)
		c.HTTP.ReadHeaderTimeout = gateway.Duration(time.Second)
		c.HTTP.ReadTimeout = gateway.Duration(time.Second)
		c.HTTP.WriteTimeout = gateway.Duration(time.Second)
		c.LongPoll.Disabled = true // a GET is held longer than these
	})
	a := connectFrom(t, addr, clientAddr, "alice@example.com")
	b := connectFrom(t, addr, clientAddr, "bob@example.com")
	drain(b)
	// t0 before the request: the server's idle timer starts once it has
	// answered, which is before keepAlive returns, by as much as a
	// loaded machine makes it.
	t0 := time.Now()
	idle := keepAlive(t, addr, attackerAddr)
	if idle == nil {
		t.Fatal("/healthz refused")
	}
	idle.SetReadDeadline(t0.Add(10 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("idle connection read %d bytes, %v", n, err)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle keep-alive connection was not closed")
	}
	t.Logf("idle keep-alive connection closed after %v", time.Since(t0).Round(10*time.Millisecond))
	waitOpen(t, l, 2)
	// The sessions' sockets are past every timeout now, and still work
	// without a reconnect.
	if elapsed := time.Since(t0); elapsed < time.Second {
		t.Fatalf("closed after %v, before the idle timeout", elapsed)
	}
	roundTrips(t, a, b, 5)
	if m := scrape(g); strings.Contains(m, "jsonrtc_resumes_total{") {
		t.Fatalf("a WebSocket was dropped by an HTTP timeout and resumed:\n%s", grepLines(m, "jsonrtc_resumes_total"))
	}
}
