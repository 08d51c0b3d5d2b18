package ws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// server runs an httptest server whose handler accepts one socket per
// request and hands it to the test.
type server struct {
	url   string
	conns chan *Conn
	// writes counts write calls on the accepted TCP connections.
	writes atomic.Int64
}

func newServer(t *testing.T, opts *Options, counting bool) *server {
	t.Helper()
	s := &server{conns: make(chan *Conn, 16)}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, opts)
		if err != nil {
			return
		}
		s.conns <- c
	}))
	if counting {
		hs.Listener = &countingListener{Listener: hs.Listener, writes: &s.writes}
	}
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		for {
			select {
			case c := <-s.conns:
				c.CloseNow()
			default:
				return
			}
		}
	})
	s.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	return s
}

// dial opens a client socket and returns it with the server's side.
func (s *server) dial(t *testing.T) (*websocket.Conn, *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, _, err := websocket.Dial(ctx, s.url, &websocket.DialOptions{Subprotocols: []string{protocol.SubprotocolJSONrtc}})
	if err != nil {
		t.Fatal(err)
	}
	cc.SetReadLimit(1 << 20)
	t.Cleanup(func() { cc.CloseNow() })
	select {
	case sc := <-s.conns:
		t.Cleanup(func() { sc.CloseNow() })
		return cc, sc
	case <-ctx.Done():
		t.Fatal("no server socket")
		return nil, nil
	}
}

type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + (seed+byte(i))%26
	}
	return b
}

func TestRoundTripSizes(t *testing.T) {
	s := newServer(t, &Options{ReadLimit: 1 << 20}, false)
	cc, sc := s.dial(t)
	ctx := context.Background()
	// Around the hijacked buffers (64 B reader, 256 B writer), the
	// read-ahead (16 KiB) and the cork bound (64 KiB).
	for i, n := range []int{1, 60, 64, 65, 200, 255, 256, 300, 4096, 16<<10 - 1, 16 << 10, 16<<10 + 7, 64 << 10, 200 << 10} {
		want := payload(n, byte(i))
		if err := cc.Write(ctx, websocket.MessageText, want); err != nil {
			t.Fatal(err)
		}
		got, err := sc.Read(ctx)
		if err != nil {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes: got %d different bytes", n, len(got))
		}
		if err := sc.Write(ctx, got); err != nil {
			t.Fatal(err)
		}
		_, echo, err := cc.Read(ctx)
		if err != nil || !bytes.Equal(echo, want) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", n, len(echo), err)
		}
	}
	// Many frames arriving in one read.
	for i := range 50 {
		if err := cc.Write(ctx, websocket.MessageText, payload(700, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		got, err := sc.Read(ctx)
		if err != nil || !bytes.Equal(got, payload(700, byte(i))) {
			t.Fatalf("frame %d: %q %v", i, got, err)
		}
	}
}

func TestTextPing(t *testing.T) {
	s := newServer(t, nil, false)
	cc, sc := s.dial(t)
	ctx := context.Background()
	read := make(chan []byte, 1)
	go func() {
		b, _ := sc.Read(ctx)
		read <- b
	}()
	cc.Write(ctx, websocket.MessageText, []byte("ping"))
	if _, b, err := cc.Read(ctx); err != nil || string(b) != "pong" {
		t.Fatalf("got %q, %v", b, err)
	}
	cc.Write(ctx, websocket.MessageText, []byte(`{}`))
	if b := <-read; string(b) != `{}` {
		t.Fatalf("read %q", b)
	}
}

// Text pings go through the SetTextPing hook: counted, answered only when
// it says so, and ending Read when it fails.
func TestTextPingHook(t *testing.T) {
	s := newServer(t, nil, false)
	cc, sc := s.dial(t)
	ctx := context.Background()
	var pings int
	errFlood := errors.New("flood")
	sc.SetTextPing(func() (bool, error) {
		pings++
		switch {
		case pings == 1:
			return true, nil
		case pings < 4:
			return false, nil
		}
		return false, errFlood
	})
	read := make(chan error, 1)
	go func() {
		b, err := sc.Read(ctx)
		if err == nil {
			err = fmt.Errorf("read a frame %q", b)
		}
		read <- err
	}()
	for range 4 {
		cc.Write(ctx, websocket.MessageText, []byte("ping"))
	}
	if err := <-read; !errors.Is(err, errFlood) {
		t.Fatalf("Read ended with %v, want the hook's error", err)
	}
	if pings != 4 {
		t.Errorf("hook called %d times, want 4", pings)
	}
	sc.CloseNow()
	var pongs int
	for {
		_, b, err := cc.Read(ctx)
		if err != nil {
			break
		}
		if string(b) == "pong" {
			pongs++
		}
	}
	if pongs != 1 {
		t.Errorf("%d pongs, want 1 (the hook refused the others)", pongs)
	}
}

// CloseWithin gives a peer that keeps sending (and never reads the close
// frame) the wait it names, not the close handshake's 5 s.
func TestCloseWithin(t *testing.T) {
	s := newServer(t, nil, false)
	cc, sc := s.dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for cc.Write(ctx, websocket.MessageText, []byte("flood")) == nil {
		}
	}()
	t0 := time.Now()
	sc.CloseWithin(websocket.StatusPolicyViolation, "flood", 100*time.Millisecond)
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("CloseWithin(100ms) took %v", d)
	}
	cancel()
	cc.CloseNow()
	<-flooded
}

// An idle socket holds no read buffer: bytes read ahead are returned to
// the pool once consumed.
func TestIdleHoldsNoReadBuffer(t *testing.T) {
	s := newServer(t, nil, false)
	cc, sc := s.dial(t)
	if sc.sock.raw == nil {
		t.Fatal("a TCP connection should be read through its RawConn")
	}
	ctx := context.Background()
	for range 3 {
		cc.Write(ctx, websocket.MessageText, payload(3000, 1))
		if _, err := sc.Read(ctx); err != nil {
			t.Fatal(err)
		}
		if sc.sock.buf != nil || len(sc.sock.pending) != 0 {
			t.Fatalf("after the frame: buf %v, %d bytes pending", sc.sock.buf != nil, len(sc.sock.pending))
		}
	}
}

// A client may send its first frame in the same segment as its
// handshake; net/http has then read it already, and it must not be lost.
func TestFrameBehindHandshake(t *testing.T) {
	s := newServer(t, nil, false)
	nc, err := net.Dial("tcp", strings.TrimPrefix(s.url, "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET /ws HTTP/1.1\r\nHost: " + nc.RemoteAddr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: jsonrtc\r\n\r\n"
	msg := []byte(`{"control":{"type":"request"}}`)
	if _, err := nc.Write(append([]byte(req), maskedFrame(msg)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	sc := <-s.conns
	defer sc.CloseNow()
	got, err := sc.Read(context.Background())
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %q, %v", got, err)
	}
}

func maskedFrame(p []byte) []byte {
	if len(p) > 125 {
		panic("short frames only")
	}
	key := make([]byte, 4)
	rand.Read(key)
	out := append([]byte{0x81, 0x80 | byte(len(p))}, key...)
	for i, b := range p {
		out = append(out, b^key[i%4])
	}
	return out
}

// Frames written together reach the socket in one write call; a frame
// larger than the hijacked writer's buffer also takes one.
func TestWritesAreCorked(t *testing.T) {
	s := newServer(t, nil, true)
	cc, sc := s.dial(t)
	ctx := context.Background()
	frames := make([][]byte, 20)
	for i := range frames {
		frames[i] = payload(200+i*100, byte(i))
	}
	before := s.writes.Load()
	if err := sc.WriteFrames(ctx, frames); err != nil {
		t.Fatal(err)
	}
	if n := s.writes.Load() - before; n != 1 {
		t.Errorf("%d frames took %d writes, want 1", len(frames), n)
	}
	before = s.writes.Load()
	if err := sc.Write(ctx, payload(4000, 0)); err != nil {
		t.Fatal(err)
	}
	if n := s.writes.Load() - before; n != 1 {
		t.Errorf("a 4000-byte frame took %d writes, want 1", n)
	}
	for i, want := range append(frames, payload(4000, 0)) {
		if _, got, err := cc.Read(ctx); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// Writers on several goroutines, pings and batches interleave whole
// frames.
func TestConcurrentWriters(t *testing.T) {
	s := newServer(t, &Options{PingInterval: time.Millisecond}, false)
	cc, sc := s.dial(t)
	ctx := context.Background()
	const writers, each = 4, 200
	go func() {
		// Reading makes coder/websocket answer the server's pings.
		for {
			if _, err := sc.Read(ctx); err != nil {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i += 2 {
				a := []byte(fmt.Sprintf("%d %d %s", w, i, payload(100+i*7, byte(i))))
				b := []byte(fmt.Sprintf("%d %d %s", w, i+1, payload(100+(i+1)*7, byte(i+1))))
				var err error
				if i%4 == 0 {
					err = sc.WriteFrames(ctx, [][]byte{a, b})
				} else if err = sc.Write(ctx, a); err == nil {
					err = sc.Write(ctx, b)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, writers)
	for range writers * each {
		_, b, err := cc.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var w, i int
		var rest string
		if _, err := fmt.Sscanf(string(b), "%d %d %s", &w, &i, &rest); err != nil || w >= writers || i != next[w] || rest != string(payload(100+i*7, byte(i))) {
			t.Fatalf("bad frame %.40q (want writer %d frame %d)", b, w, next[w])
		}
		next[w]++
	}
	wg.Wait()
}

// A peer that stops reading is dropped after the write timeout: the write
// fails and the reader learns the socket is gone.
func TestStuckPeerDropped(t *testing.T) {
	s := newServer(t, &Options{WriteTimeout: 200 * time.Millisecond}, false)
	_, sc := s.dial(t) // the client never reads
	ctx := context.Background()
	readErr := make(chan error, 1)
	go func() {
		_, err := sc.Read(ctx)
		readErr <- err
	}()
	big := payload(60<<10, 0)
	var err error
	for err == nil {
		err = sc.Write(ctx, big)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write failed with %v, want a deadline", err)
	}
	if err := <-readErr; err == nil {
		t.Fatal("read succeeded on a dropped socket")
	}
	if err := sc.Write(ctx, []byte("x")); err == nil {
		t.Fatal("write succeeded on a dropped socket")
	}
}

// A context that ends during a read closes the socket; one that ends
// between reads does not.
func TestReadContext(t *testing.T) {
	s := newServer(t, nil, false)
	cc, sc := s.dial(t)
	ctx1, cancel1 := context.WithCancel(context.Background())
	cc.Write(context.Background(), websocket.MessageText, []byte("1"))
	if b, err := sc.Read(ctx1); err != nil || string(b) != "1" {
		t.Fatalf("%q %v", b, err)
	}
	cancel1()
	if _, err := sc.Read(ctx1); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with an ended context: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cc.Write(context.Background(), websocket.MessageText, []byte("2"))
	if b, err := sc.Read(ctx2); err != nil || string(b) != "2" {
		t.Fatalf("after the first context ended: %q %v", b, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sc.Read(ctx2)
		done <- err
	}()
	// The pong proves the read is under way.
	cc.Write(context.Background(), websocket.MessageText, []byte("ping"))
	if _, b, err := cc.Read(context.Background()); err != nil || string(b) != "pong" {
		t.Fatalf("%q %v", b, err)
	}
	cancel2()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("read interrupted by its context: %v", err)
	}
	if _, _, err := cc.Read(context.Background()); err == nil {
		t.Fatal("the socket should be closed")
	}
}

func TestLimits(t *testing.T) {
	s := newServer(t, &Options{ReadLimit: 100}, false)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		data []byte
		code websocket.StatusCode
	}{
		{"oversize", websocket.MessageText, payload(101, 0), websocket.StatusMessageTooBig},
		{"utf8", websocket.MessageText, []byte{'{', 0xff, '}'}, websocket.StatusInvalidFramePayloadData},
		{"binary", websocket.MessageBinary, []byte("{}"), websocket.StatusUnsupportedData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := s.dial(t)
			closed := make(chan error, 1)
			go func() {
				_, _, err := cc.Read(ctx)
				closed <- err
			}()
			cc.Write(ctx, tc.typ, tc.data)
			if _, err := sc.Read(ctx); err == nil {
				t.Fatal("read succeeded")
			}
			err := <-closed
			if got := websocket.CloseStatus(err); got != tc.code {
				t.Fatalf("close %d (%v), want %d", got, err, tc.code)
			}
		})
	}
}

// With IdleAfter, a read with nothing to read gives up with ErrIdle and
// leaves the socket intact for a read from another goroutine.
func TestIdleAfter(t *testing.T) {
	s := newServer(t, &Options{IdleAfter: 20 * time.Millisecond}, false)
	cc, sc := s.dial(t)
	ctx := context.Background()
	cc.Write(ctx, websocket.MessageText, []byte(`{}`))
	if b, err := sc.Read(ctx); err != nil || string(b) != `{}` {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := sc.Read(ctx); !errors.Is(err, ErrIdle) {
		t.Fatalf("read on an idle socket: %v, want ErrIdle", err)
	}
	// Having shed nothing since, the next read waits without a bound.
	got := make(chan []byte, 1)
	go func() {
		b, err := sc.Read(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	cc.Write(ctx, websocket.MessageText, []byte(`{"after":"idle"}`))
	if b := <-got; string(b) != `{"after":"idle"}` {
		t.Fatalf("read after idle: %q", b)
	}
	if err := sc.Write(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := cc.Read(ctx); err != nil || string(b) != "x" {
		t.Fatalf("%q %v", b, err)
	}
}

// A muted socket reads nothing more, whatever is waiting: a socket hung
// up for abuse leaves the flood in the kernel, where flow control stops
// it, instead of reading and parsing it until the peer's close frame.
func TestMutedSocketReadsNothing(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := newSock(a, nil, 0)
	go b.Write([]byte("flood flood flood"))
	s.muteReads(time.Now().Add(10 * time.Millisecond))
	n, err := s.Read(make([]byte, 64))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("muted read: %d bytes, %v", n, err)
	}
}
