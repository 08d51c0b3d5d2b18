// Package ws is the WebSocket transport of JSONrtc (PROTOCOL.md section 1)
// on github.com/coder/websocket: subprotocol negotiation, the origin
// allow-list, the frame size limit, UTF-8 checking, the text ping/pong
// keepalive and WebSocket ping liveness.
//
// Accept upgrades a request into a [Conn]; Conn.Read returns the JSON
// frames, having answered text pings itself. A Conn owns at most one goroutine
// at a time (a liveness ping, run from a timer), which Close and CloseNow
// wait for.
package ws

import (
	"context"
	"errors"
	"fmt"
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
}

// ErrSubprotocol is returned by Accept when the client offered none of
// the JSONrtc subprotocols; the response has already been written.
var ErrSubprotocol = errors.New("ws: no JSONrtc subprotocol offered")

// Conn is one accepted WebSocket.
type Conn struct {
	c      *websocket.Conn
	sub    string
	opts   Options
	remote string
	ctx    context.Context
	cancel context.CancelFunc
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
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
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
	conn := &Conn{c: c, sub: sub, opts: o, remote: r.RemoteAddr, ctx: ctx, cancel: cancel}
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
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.PingTimeout)
	err := c.c.Ping(ctx)
	cancel()
	if err != nil {
		c.c.CloseNow()
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.timer.Reset(c.opts.PingInterval)
	}
	c.mu.Unlock()
}

// stopPinging stops the liveness timer and waits for a ping under way.
func (c *Conn) stopPinging() {
	c.mu.Lock()
	c.closed = true
	c.timer.Stop()
	c.mu.Unlock()
	c.cancel()
	c.pinging.Wait()
}

// Read returns the next JSON frame. It answers text "ping" frames with
// "pong" itself. Invalid UTF-8 closes the socket with 1007, a binary
// frame with 1003 and an oversized frame with 1009.
func (c *Conn) Read(ctx context.Context) ([]byte, error) {
	for {
		typ, data, err := c.c.Read(ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageText {
			c.c.Close(websocket.StatusUnsupportedData, "JSONrtc frames are text")
			return nil, errors.New("ws: binary frame")
		}
		if string(data) == "ping" {
			if err := c.Write(ctx, []byte("pong")); err != nil {
				return nil, err
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

// Write sends one text frame. It is safe for concurrent use.
func (c *Conn) Write(ctx context.Context, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.WriteTimeout)
	defer cancel()
	return c.c.Write(ctx, websocket.MessageText, data)
}

// Close closes the socket with a close frame and waits for the pinger.
func (c *Conn) Close(code websocket.StatusCode, reason string) error {
	c.stopPinging()
	return c.c.Close(code, reason)
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
