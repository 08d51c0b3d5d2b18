// Package ws is the WebSocket transport of JSONrtc (docs/protocol.md §1)
// on github.com/coder/websocket: subprotocol negotiation, the origin
// allow-list, the frame size limit, UTF-8 checking, the text ping/pong
// keepalive and WebSocket ping liveness.
//
// Accept upgrades a request into a [Conn]; Conn.Read returns the JSON
// frames, having answered text pings itself; Conn.WriteFrames sends a
// batch in one system call. A Conn owns at most one goroutine at a time (a
// liveness ping, run from a timer), which Close and CloseNow wait for.
//
// An idle socket is most of what an idle session costs, so Accept hands
// coder/websocket a connection of its own (sock.go) that holds no buffer
// while nothing is in flight and bounds writes with a socket deadline.
package ws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Close codes used by the gateway beyond RFC 6455's.
const (
	// StatusReplaced closes an old socket when a resume arrives on a new one.
	StatusReplaced websocket.StatusCode = 4000
)

// Options configure Accept. The zero value is usable.
type Options struct {
	// OriginPatterns lists allowed Origin hosts (path.Match patterns, as in
	// coder/websocket). A request from the gateway's own host is always
	// allowed; one without Origin (a non-browser client) too.
	OriginPatterns []string
	// InsecureSkipVerify disables the origin check (open development mode).
	InsecureSkipVerify bool
	// ReadLimit is the largest frame accepted; larger ones close the
	// socket with 1009. Default 64 KiB.
	ReadLimit int64
	// PingInterval is how often liveness is checked with a WebSocket ping;
	// PingTimeout how long a pong may take. Defaults 20 s and 10 s.
	PingInterval, PingTimeout time.Duration
	// WriteTimeout bounds one write. Default 10 s.
	WriteTimeout time.Duration
	// IdleAfter, when set, makes Read return ErrIdle once the socket has
	// had nothing to read for that long, if it has returned a frame since
	// Accept or the last ErrIdle. The Conn is intact: the caller
	// reads on from a new goroutine and lets the old one exit. A
	// goroutine keeps the stack its deepest work needed (4 KiB or more
	// once it has handled a frame) until garbage collection, and even then
	// does not go back to the runtime's initial 2 KiB; a new goroutine
	// parked in Read keeps that initial size for as long as nothing
	// arrives. Zero: Read waits as long as it takes.
	IdleAfter time.Duration
}

// ErrIdle is returned by Read when the socket had nothing to read for
// Options.IdleAfter.
var ErrIdle = errors.New("ws: socket idle")

// ErrSubprotocol is returned by Accept when the client offered none of
// the JSONrtc subprotocols; the response has already been written.
var ErrSubprotocol = errors.New("ws: no JSONrtc subprotocol offered")

// Conn is one accepted WebSocket.
type Conn struct {
	c    *websocket.Conn
	sock *sock
	sub  string

	pingInterval, pingTimeout time.Duration
	idleAfter                 time.Duration
	// handled: a frame was read since Accept or the last ErrIdle. Only
	// then can a goroutine have a stack worth shedding; a wait without
	// one has no bound, and arming a bound would itself take stack.
	handled bool

	// textPing is SetTextPing's hook; nil answers every ping.
	textPing func() (answer bool, err error)

	remote string
	ctx    context.Context
	cancel context.CancelFunc

	// The context a read is bounded by is watched once, not per read (see
	// startRead); rmu guards the watch.
	rmu     sync.Mutex
	watched context.Context
	unwatch func() bool
	reading bool

	// The liveness check runs from a timer, not a goroutine of its own:
	// an idle session then costs one goroutine (its reader), not two.
	mu      sync.Mutex
	timer   *time.Timer
	pinging sync.WaitGroup
	closed  bool
}

// Accept checks the subprotocol and origin and upgrades the request.
// On failure it has written the HTTP response (400 with a plain-text
// reason for a missing subprotocol, 403 for a foreign origin).
func Accept(w http.ResponseWriter, r *http.Request, opts *Options) (*Conn, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 64 << 10
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 20 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	sub := pickSubprotocol(r.Header.Values("Sec-WebSocket-Protocol"))
	if sub == "" {
		http.Error(w, "jsonrtc: the WebSocket subprotocol must be \"jsonrtc\" or \"webrtc.oracle.com\"", http.StatusBadRequest)
		return nil, ErrSubprotocol
	}
	hw := &hijacker{ResponseWriter: w, writeTimeout: o.WriteTimeout}
	c, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		Subprotocols:       []string{sub},
		OriginPatterns:     o.OriginPatterns,
		InsecureSkipVerify: o.InsecureSkipVerify,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, fmt.Errorf("ws: accept: %w", err)
	}
	c.SetReadLimit(o.ReadLimit)
	ctx, cancel := context.WithCancel(context.Background())
	conn := &Conn{c: c, sock: hw.sock, sub: sub, pingInterval: o.PingInterval, pingTimeout: o.PingTimeout, idleAfter: o.IdleAfter,
		remote: r.RemoteAddr, ctx: ctx, cancel: cancel}
	conn.timer = time.AfterFunc(o.PingInterval, conn.ping)
	return conn, nil
}

// pickSubprotocol returns the first JSONrtc subprotocol the client
// offered, in the client's order of preference.
func pickSubprotocol(values []string) string {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			switch p = strings.TrimSpace(p); p {
			case protocol.SubprotocolJSONrtc, protocol.SubprotocolOracle:
				return p
			}
		}
	}
	return ""
}

// SetTextPing has f called for every text ping Read takes, before it is
// answered: the gateway counts pings against the socket's frame budget.
// f says whether to answer; an error ends Read with that error and the
// ping unanswered. Call it before the first Read.
func (c *Conn) SetTextPing(f func() (answer bool, err error)) { c.textPing = f }

// Subprotocol is the negotiated subprotocol.
func (c *Conn) Subprotocol() string { return c.sub }

// RemoteAddr is the peer's address as the HTTP server saw it.
func (c *Conn) RemoteAddr() string { return c.remote }

// ping checks liveness; a peer that does not answer in time is gone, and
// the socket is closed so that Read returns.
func (c *Conn) ping() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.pinging.Add(1)
	c.mu.Unlock()
	defer c.pinging.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.pingTimeout)
	err := c.c.Ping(ctx)
	cancel()
	if err != nil {
		c.c.CloseNow()
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.timer.Reset(c.pingInterval)
	}
	c.mu.Unlock()
}

// Ping sends a WebSocket ping and waits for its pong: the peer holds
// this socket and reads it. It needs the socket's reader running (the
// session's), which takes the pong.
func (c *Conn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

// stopPinging stops the liveness timer and waits for a ping under way.
func (c *Conn) stopPinging() {
	c.mu.Lock()
	c.closed = true
	c.timer.Stop()
	c.mu.Unlock()
	c.cancel()
	c.pinging.Wait()
	c.rmu.Lock()
	if c.unwatch != nil {
		c.unwatch()
		c.unwatch, c.watched = nil, nil
	}
	c.rmu.Unlock()
}

// Read returns the next JSON frame. It answers text "ping" frames with
// "pong" itself (see SetTextPing). Invalid UTF-8 closes the socket with 1007, a binary
// frame with 1003 and an oversized frame with 1009. When ctx ends during
// a read, the socket is closed. Read must not be called concurrently.
func (c *Conn) Read(ctx context.Context) ([]byte, error) {
	if err := c.startRead(ctx); err != nil {
		return nil, err
	}
	data, err := c.read()
	c.endRead()
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return data, err
}

func (c *Conn) read() ([]byte, error) {
	for {
		idle := c.idleAfter
		if !c.handled {
			idle = 0
		}
		if c.sock.waitReadable(idle) {
			c.handled = false
			return nil, ErrIdle
		}
		c.handled = true
		// The context given to coder/websocket never ends: startRead
		// watches the caller's.
		typ, r, err := c.c.Reader(context.Background())
		if err != nil {
			return nil, err
		}
		data, err := c.readMessage(r)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageText {
			c.c.Close(websocket.StatusUnsupportedData, "JSONrtc frames are text")
			return nil, errors.New("ws: binary frame")
		}
		if string(data) == "ping" {
			answer := true
			if c.textPing != nil {
				if answer, err = c.textPing(); err != nil {
					return nil, err
				}
			}
			if answer {
				if err := c.Write(context.Background(), []byte("pong")); err != nil {
					return nil, err
				}
			}
			continue
		}
		if !utf8.Valid(data) {
			c.c.Close(websocket.StatusInvalidFramePayloadData, "invalid UTF-8")
			return nil, errors.New("ws: invalid UTF-8")
		}
		return data, nil
	}
}

// readMessage reads one message into a pooled buffer and returns a copy
// of exactly its size (callers keep frames, and parts of them, after the
// next read). coder/websocket's Read would grow a fresh buffer from 512
// bytes, allocating and copying several times for an SDP-sized frame.
func (c *Conn) readMessage(r io.Reader) ([]byte, error) {
	bp := messagePool.Get().(*[]byte)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			messagePool.Put(bp)
			return nil, err
		}
	}
	out := bytes.Clone(b)
	if cap(b) <= maxPooledMessage {
		*bp = b[:0]
		messagePool.Put(bp)
	}
	return out, nil
}

// startRead binds the read about to start to ctx. coder/websocket would
// register a context.AfterFunc on ctx for every frame header and payload
// it reads: an allocation and a lock on ctx (for the gateway, one context
// shared by every session) per frame. Instead the same ctx is watched for
// as long as reads keep using it, and its end closes the socket only if
// it comes during a read.
func (c *Conn) startRead(ctx context.Context) error {
	if ctx.Done() == nil {
		return nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.watched != ctx {
		if c.unwatch != nil {
			c.unwatch()
		}
		c.watched = ctx
		c.unwatch = context.AfterFunc(ctx, func() {
			c.rmu.Lock()
			reading := c.reading && c.watched == ctx
			c.rmu.Unlock()
			if reading {
				c.c.CloseNow()
			}
		})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.reading = true
	return nil
}

func (c *Conn) endRead() {
	c.rmu.Lock()
	c.reading = false
	c.rmu.Unlock()
}

// Write sends one text frame. It is safe for concurrent use. A write
// that the peer does not take within Options.WriteTimeout closes the
// socket.
func (c *Conn) Write(ctx context.Context, data []byte) error {
	c.sock.cork()
	err := c.c.Write(ctx, websocket.MessageText, data)
	if err2 := c.sock.uncork(); err == nil {
		err = err2
	}
	return err
}

// WriteFrames sends each of frames as one text frame, in as few system
// calls as their total size allows (one up to 64 KiB). It stops at the
// first error.
func (c *Conn) WriteFrames(ctx context.Context, frames [][]byte) error {
	c.sock.cork()
	var err error
	for _, data := range frames {
		if err = c.c.Write(ctx, websocket.MessageText, data); err != nil {
			break
		}
	}
	if err2 := c.sock.uncork(); err == nil {
		err = err2
	}
	return err
}

// Close closes the socket with a close frame and waits for the pinger.
func (c *Conn) Close(code websocket.StatusCode, reason string) error {
	c.stopPinging()
	return c.c.Close(code, reason)
}

// CloseWithin sends the close frame as Close does, then reads nothing
// more and drops the connection after wait, instead of reading for up to
// coder/websocket's 5 s until the peer's close frame: a flooder that does
// not stop sending would otherwise have its frames read, parsed and
// dropped for all that time.
func (c *Conn) CloseWithin(code websocket.StatusCode, reason string, wait time.Duration) error {
	// The close frame goes out, then nothing more is read: the peer's
	// close frame is not awaited (a flooder's stream would have to be
	// read and parsed up to it, which is what a flood wants), and after
	// wait the connection is dropped. A peer that reads what it is sent
	// has seen the close frame by then.
	c.sock.muteReads(time.Now().Add(wait))
	return c.Close(code, reason)
}

// CloseNow closes the TCP connection without a close handshake.
func (c *Conn) CloseNow() error {
	err := c.c.CloseNow()
	c.stopPinging()
	return err
}

// CloseStatus returns the close code the peer sent, or -1 when the socket
// ended without a close frame.
func CloseStatus(err error) websocket.StatusCode { return websocket.CloseStatus(err) }
