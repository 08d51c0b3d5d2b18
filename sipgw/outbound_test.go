package sipgw

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"
)

func parseResponse(t *testing.T, extra string) *sip.Response {
	t.Helper()
	raw := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n" +
		"Call-ID: x\r\nCSeq: 1 REGISTER\r\n" + extra + "Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Response)
}

func TestParseFlowTimer(t *testing.T) {
	for hdr, want := range map[string]time.Duration{
		"":                       0,
		"Flow-Timer: 25\r\n":     25 * time.Second,
		"Flow-Timer:  120 \r\n":  120 * time.Second,
		"Flow-Timer: 0\r\n":      0,
		"Flow-Timer: -5\r\n":     0,
		"Flow-Timer: 2.5\r\n":    0,
		"Flow-Timer: 999999\r\n": 0,
		"Flow-Timer: x\r\n":      0,
	} {
		got, ok := parseFlowTimer(parseResponse(t, hdr))
		if got != want || ok != (want > 0) {
			t.Errorf("%q: %v %v, want %v", hdr, got, ok, want)
		}
	}
}

func TestRequiresOutbound(t *testing.T) {
	for hdr, want := range map[string]bool{
		"":                                   false,
		"Require: outbound\r\n":              true,
		"Require: gruu, Outbound\r\n":        true,
		"Require: gruu\r\nRequire: path\r\n": false,
		"Require: outbound-x\r\n":            false,
	} {
		if got := requiresOutbound(parseResponse(t, hdr)); got != want {
			t.Errorf("%q: %v, want %v", hdr, got, want)
		}
	}
}

// RFC 5626 section 4.4.1: between 80% and 100% of the Flow-Timer; without
// one, 95 to 120 s unless sip.keepalive_interval fixes it.
func TestKeepaliveInterval(t *testing.T) {
	lo, hi := func() float64 { return 0 }, func() float64 { return 0.999999 }
	cases := []struct {
		flow, fixed time.Duration
		r           func() float64
		min, max    time.Duration
	}{
		{25 * time.Second, 0, lo, 20 * time.Second, 20 * time.Second},
		{25 * time.Second, 0, hi, 24900 * time.Millisecond, 25 * time.Second},
		{25 * time.Second, 5 * time.Second, hi, 24900 * time.Millisecond, 25 * time.Second},
		{0, 5 * time.Second, hi, 5 * time.Second, 5 * time.Second},
		{0, 0, lo, 95 * time.Second, 95 * time.Second},
		{0, 0, hi, 119900 * time.Millisecond, 120 * time.Second},
	}
	for _, c := range cases {
		if got := keepaliveInterval(c.flow, c.fixed, c.r); got < c.min || got > c.max {
			t.Errorf("flow %v fixed %v: %v, want %v..%v", c.flow, c.fixed, got, c.min, c.max)
		}
	}
}

// RFC 5626 section 4.5: min(1800 s, 30 s * 2^failures), 50% to 100% of it.
func TestRecoveryWait(t *testing.T) {
	lo, hi := func() float64 { return 0 }, func() float64 { return 0.999999 }
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{0, 30 * time.Second}, {1, 60 * time.Second}, {5, 960 * time.Second}, {6, 1800 * time.Second}, {100, 1800 * time.Second}} {
		if got := recoveryWait(c.failures, lo); got != c.want/2 {
			t.Errorf("%d failures, low: %v, want %v", c.failures, got, c.want/2)
		}
		if got := recoveryWait(c.failures, hi); got > c.want || got < c.want*99/100 {
			t.Errorf("%d failures, high: %v, want about %v", c.failures, got, c.want)
		}
	}
}

// A ping writes a double CRLF; its pong, seen by sipgo's read filter as
// a bare CRLF from the flow's remote address, ends the wait. Without a
// pong the flow is dead after exactly 10 s.
func TestPingFlowPongTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p pongs
		raddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
		key := flowKey("TCP", raddr.String())
		props := sip.TransportReadProps{Transport: "TCP", RemoteAddr: raddr}
		w := &recordWriter{}

		// The pong 9 s later: alive.
		start := time.Now()
		pong := p.next(key)
		go func() {
			time.Sleep(9 * time.Second)
			if out, err := p.filter(props, []byte("\r\n")); string(out) != "\r\n" || err != nil {
				t.Errorf("filter changed the pong: %q %v", out, err)
			}
		}()
		if err := pingFlow(context.Background(), w, pong); err != nil {
			t.Fatalf("answered ping: %v", err)
		}
		if d := time.Since(start); d != 9*time.Second {
			t.Errorf("answered after %v", d)
		}
		if string(w.b) != "\r\n\r\n" {
			t.Errorf("ping %q", w.b)
		}

		// A CRLF from another flow, or a message, is no pong: dead at 10 s.
		start = time.Now()
		pong = p.next(key)
		_, _ = p.filter(sip.TransportReadProps{Transport: "TCP", RemoteAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060}}, []byte("\r\n"))
		_, _ = p.filter(props, []byte("\r\n\r\n"))
		_, _ = p.filter(props, []byte("OPTIONS sip:x SIP/2.0\r\n"))
		err := pingFlow(context.Background(), w, pong)
		if !errors.Is(err, errFlowDead) {
			t.Fatalf("unanswered ping: %v", err)
		}
		if d := time.Since(start); d != pongTimeout {
			t.Errorf("dead after %v, want %v", d, pongTimeout)
		}

		// A write that fails: dead at once.
		start = time.Now()
		if err := pingFlow(context.Background(), failWriter{}, p.next(key)); !errors.Is(err, errFlowDead) || time.Since(start) != 0 {
			t.Errorf("failed write: %v after %v", err, time.Since(start))
		}
	})
}

type recordWriter struct{ b []byte }

func (w *recordWriter) Write(p []byte) (int, error) {
	w.b = append(w.b[:0], p...)
	return len(p), nil
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// reg-id and Supported: outbound go on REGISTER only with outbound on.
func TestRegisterOutboundHeaders(t *testing.T) {
	for _, on := range []bool{false, true} {
		g, err := New(Config{Listen: ListenConfig{TCP: "127.0.0.1:0"}, Domain: "example.com", Outbound: map[bool]string{false: "off", true: "auto"}[on]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		aor, _ := g.AOR("alice")
		r := &registration{g: g, aor: aor, token: "rtok", instance: "urn:uuid:x", callID: "c", fromTag: "f"}
		req := r.newRequest(600*time.Second, g.outboundHop())
		ct := req.Contact()
		regID, hasRegID := ct.Params.Get("reg-id")
		sup := req.GetHeader("Supported").Value()
		want := map[bool]string{false: "path, gruu", true: "outbound, path, gruu"}[on]
		if on != hasRegID || (on && regID != "1") || sup != want {
			t.Errorf("outbound %v: Contact %s, Supported %q", on, ct.Value(), sup)
		}
		if _, ok := ct.Params.Get("+sip.instance"); !ok {
			t.Errorf("no +sip.instance: %s", ct.Value())
		}
	}
}

// fakeConn is a sipgo stream connection that records raw writes.
type fakeConn struct {
	mu     sync.Mutex
	wrote  []byte
	closed bool
}

func (c *fakeConn) LocalAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *fakeConn) WriteMsg(sip.Message) error { return nil }
func (c *fakeConn) Ref(int) int                { return 1 }
func (c *fakeConn) TryClose() (int, error)     { return 1, nil }
func (c *fakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrote = append(c.wrote, p...)
	return len(p), nil
}
func (c *fakeConn) Close() error { c.mu.Lock(); defer c.mu.Unlock(); c.closed = true; return nil }

func (c *fakeConn) state() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.wrote), c.closed
}

// A ping goes on the very connection the registration's REGISTER came
// back on. When the pool holds another one for the registrar's address
// (another registration sharing the flow found it dead and recovered on
// a new connection), this binding's flow is dead too: the registrar ties
// it to the old connection. The new connection gets no ping and is
// left open.
func TestPingReplacedConnection(t *testing.T) {
	g := startTest(t, Config{Listen: ListenConfig{TCP: "127.0.0.1:0"}, Domain: "example.com"}, nil)
	const raddr = "127.0.0.1:5999"
	pool := g.ua.TransportLayer().Pool("tcp")
	old, cur := &fakeConn{}, &fakeConn{}
	pool.Add(raddr, cur)
	t.Cleanup(func() { pool.Delete(raddr) })

	err := g.ping(context.Background(), flow{network: "tcp", raddr: raddr, conn: old})
	if !errors.Is(err, errFlowDead) {
		t.Fatalf("ping on a replaced connection: %v", err)
	}
	if wrote, closed := cur.state(); wrote != "" || closed {
		t.Errorf("the new connection got %q, closed %v", wrote, closed)
	}

	// On its own connection, answered: alive.
	done := make(chan error, 1)
	go func() { done <- g.ping(context.Background(), flow{network: "tcp", raddr: raddr, conn: cur}) }()
	props := sip.TransportReadProps{Transport: "TCP", RemoteAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}}
	for {
		if wrote, _ := cur.state(); wrote == "\r\n\r\n" {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("ping ended before its pong: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	_, _ = g.pongs.filter(props, []byte("\r\n"))
	if err := <-done; err != nil {
		t.Fatalf("answered ping: %v", err)
	}
}
