// Package longpoll carries JSONrtc frames over plain HTTP for clients
// whose proxies block WebSocket (docs/protocol.md §1.6). A [Conn] stands
// for one WebSocket: the client POSTs its frames (one, or a batch as a
// JSON array), and a held GET returns the server's frames as a JSON
// array. Both are bound to the Conn by a random 128-bit token, issued in
// the Jsonrtc-Poll-Token header of the response to the first POST.
//
// Start with [NewServer]; the gateway opens a Conn per connect
// ([Server.Open]) and finds it again by token ([Server.Lookup]). A Conn
// has the methods of transport/ws.Conn that a session needs (Read,
// WriteFrames, Close, CloseNow), so the gateway serves both alike.
package longpoll

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Headers of the long-poll exchange (docs/protocol.md §1.6).
const (
	// HeaderToken carries the Conn's token: set on the first POST's
	// response, required on every later request.
	HeaderToken = "Jsonrtc-Poll-Token"
	// HeaderCloseCode and HeaderCloseReason are set on the GET response
	// that carries the Conn's last frames when the server closed it: the
	// code is a WebSocket close code (4000 replaced, 1001 going away...).
	HeaderCloseCode   = "Jsonrtc-Close-Code"
	HeaderCloseReason = "Jsonrtc-Close-Reason"
)

// Options configure a Server. The zero value of a field is its default.
type Options struct {
	// Hold is how long a GET waits for frames before an empty 204.
	// Default 25 s: under the 30 s many proxies allow an idle response.
	Hold time.Duration
	// IdleTimeout is how long a Conn may have no GET held before it is
	// lost (a socket gone: the session waits for a resume). Default 15 s.
	IdleTimeout time.Duration
	// MaxFrameBytes bounds one frame; MaxBatch the frames of one POST.
	// Over either, the POST is refused with 413. Defaults 64 KiB and 32.
	MaxFrameBytes int64
	MaxBatch      int
	// MaxPending bounds the frames written and not yet fetched by a GET;
	// a write over it fails (the gateway then drops the Conn for a
	// resume, as it drops a WebSocket that cannot keep up). Default 1024.
	MaxPending int
}

func (o *Options) defaults() Options {
	var d Options
	if o != nil {
		d = *o
	}
	if d.Hold <= 0 {
		d.Hold = 25 * time.Second
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = 15 * time.Second
	}
	if d.MaxFrameBytes <= 0 {
		d.MaxFrameBytes = 64 << 10
	}
	if d.MaxBatch <= 0 {
		d.MaxBatch = 32
	}
	if d.MaxPending <= 0 {
		d.MaxPending = 1024
	}
	return d
}

// Errors of the exchange.
var (
	// ErrTooLarge: a frame, or the batch, is over the limits (413).
	ErrTooLarge = errors.New("longpoll: request too large")
	// ErrBadBody: the body is neither a JSON object nor an array of them.
	ErrBadBody = errors.New("longpoll: body is not a frame or an array of frames")
	// ErrLost is what Read returns once the Conn is gone without a close
	// from the client: its poller went away, or the server dropped it.
	ErrLost = errors.New("longpoll: connection lost")
	// ErrSlow is what a write returns when MaxPending frames wait already.
	ErrSlow = errors.New("longpoll: client does not fetch its frames")
)

// Server holds the live Conns by token. It has no goroutines of its own:
// requests run on net/http's, timeouts on timers.
type Server struct {
	opts  Options
	mu    sync.Mutex
	conns map[[sha256.Size]byte]*Conn
}

// NewServer returns a Server; opts nil means defaults.
func NewServer(opts *Options) *Server {
	return &Server{opts: opts.defaults(), conns: map[[sha256.Size]byte]*Conn{}}
}

// key is how a token is found: by its hash, so that the map's lookup
// time says nothing of how close a guess came.
func key(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// Open makes a Conn for a client at remote, reached through the path
// prefix scope (the application's /poll/<app>: a token opens nothing
// elsewhere). It is lost unless a GET comes within IdleTimeout.
func (s *Server) Open(remote, scope string) *Conn {
	var b [16]byte
	rand.Read(b[:])
	c := &Conn{
		srv: s, token: hex.EncodeToString(b[:]), remote: remote, scope: scope,
		in:     make(chan []byte, s.opts.MaxBatch),
		notify: make(chan struct{}, 1),
		gone:   make(chan struct{}),
	}
	c.idle = time.AfterFunc(s.opts.IdleTimeout, c.onIdle)
	s.mu.Lock()
	s.conns[key(c.token)] = c
	s.mu.Unlock()
	return c
}

// Lookup returns the Conn of token for scope, or nil.
func (s *Server) Lookup(token, scope string) *Conn {
	if token == "" {
		return nil
	}
	s.mu.Lock()
	c := s.conns[key(token)]
	s.mu.Unlock()
	if c == nil || c.scope != scope {
		return nil
	}
	return c
}

// Len is the number of Conns held.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) forget(c *Conn) {
	s.mu.Lock()
	if s.conns[key(c.token)] == c {
		delete(s.conns, key(c.token))
	}
	s.mu.Unlock()
}

// Conn is one long-poll connection: the HTTP counterpart of a WebSocket.
type Conn struct {
	srv    *Server
	token  string
	remote string
	scope  string
	origin string // BindOrigin's; set before the token is handed out

	// in carries POSTed frames to Read; its bound, with POSTs that wait
	// for room, is the back-pressure a TCP window gives a WebSocket.
	in chan []byte
	// notify wakes the held GET: frames were written, or the Conn closed.
	notify chan struct{}
	// gone is closed when the Conn is lost or the client logged out;
	// Read then returns err.
	gone chan struct{}

	mu      sync.Mutex
	out     [][]byte
	poll    *poll // the held GET, if any
	idle    *time.Timer
	closed  bool // Close: the last frames and the code await a GET
	code    websocket.StatusCode
	reason  string
	ended   bool // gone is closed
	err     error
	drained bool // the close was delivered
	// textPing is SetTextPing's hook; nil answers every ping. (Set by the
	// gateway's reader, which may start after the token went out.)
	textPing func() (answer bool, err error)
}

// poll is one held GET; replaced is closed when a newer GET takes over.
type poll struct{ replaced chan struct{} }

// Token is the Conn's token, for the Jsonrtc-Poll-Token header.
func (c *Conn) Token() string { return c.token }

// RemoteAddr is the address of the request that opened the Conn.
func (c *Conn) RemoteAddr() string { return c.remote }

// SetTextPing has f called for every keepalive ping POSTed (the body
// "ping", docs/protocol.md §1.4 and §1.6), as transport/ws.Conn's: f says
// whether to answer (204; otherwise 429), and an error (a flood) closes
// the Conn with 1008.
func (c *Conn) SetTextPing(f func() (answer bool, err error)) {
	c.mu.Lock()
	c.textPing = f
	c.mu.Unlock()
}

// BindOrigin binds the Conn to the Origin of the request that opened
// it. Call it before the token is handed out.
func (c *Conn) BindOrigin(origin string) { c.origin = origin }

// OriginAllowed reports whether a request with this Origin header may
// use the Conn's token: the bound origin, or none. A browser sends no
// Origin on a same-origin GET (Fetch: only CORS requests and methods
// other than GET and HEAD carry one), and a page of another origin can
// send the token header only in a CORS request, which carries its
// Origin: the binding still keeps every other origin out. A client that
// is not a browser could name any origin anyway.
func (c *Conn) OriginAllowed(origin string) bool { return origin == "" || origin == c.origin }

// Subprotocol is always JSONrtc's own: long-poll has no wsc.js clients.
func (c *Conn) Subprotocol() string { return protocol.SubprotocolJSONrtc }

// Read returns the next frame a client POSTed. It fails once the Conn is
// gone: with a websocket.CloseError of 1000 after the client's DELETE (a
// logout), with ErrLost otherwise.
func (c *Conn) Read(ctx context.Context) ([]byte, error) {
	select {
	case data := <-c.in:
		return data, nil
	default:
	}
	select {
	case data := <-c.in:
		return data, nil
	case <-c.gone:
		return nil, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Write queues one frame for the next GET.
func (c *Conn) Write(ctx context.Context, data []byte) error {
	return c.WriteFrames(ctx, [][]byte{data})
}

// WriteFrames queues frames for the next GET; it never blocks. It fails
// when the Conn is gone or closed, or MaxPending frames already wait.
func (c *Conn) WriteFrames(_ context.Context, frames [][]byte) error {
	c.mu.Lock()
	switch {
	case c.ended || c.closed:
		c.mu.Unlock()
		return ErrLost
	case len(c.out)+len(frames) > c.srv.opts.MaxPending:
		c.mu.Unlock()
		return ErrSlow
	}
	for _, f := range frames {
		c.out = append(c.out, bytes.Clone(f))
	}
	c.mu.Unlock()
	c.wake()
	return nil
}

func (c *Conn) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Close ends the Conn with a WebSocket close code: the frames queued and
// the code go to the next GET (within IdleTimeout), and Read fails.
func (c *Conn) Close(code websocket.StatusCode, reason string) error {
	c.mu.Lock()
	if c.closed || c.ended {
		c.mu.Unlock()
		return nil
	}
	c.closed, c.code, c.reason = true, code, reason
	c.endLocked(ErrLost)
	// The close waits for a poller as long as a poller may be away.
	c.idle.Reset(c.srv.opts.IdleTimeout)
	c.mu.Unlock()
	c.wake()
	return nil
}

// CloseWithin is Close: no client frames are read after it anyway.
func (c *Conn) CloseWithin(code websocket.StatusCode, reason string, _ time.Duration) error {
	return c.Close(code, reason)
}

// CloseNow drops the Conn: its token opens nothing any more, what was
// queued is dropped, a held GET ends with 410. After Close it leaves the
// close for the next GET, as a WebSocket's close frame, once sent, is
// not taken back by closing the TCP connection.
func (c *Conn) CloseNow() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.srv.forget(c)
	c.endLocked(ErrLost)
	c.closed, c.drained, c.out = true, true, nil
	c.idle.Stop()
	c.mu.Unlock()
	c.wake()
	return nil
}

// endLocked makes Read fail with err; c.mu is held.
func (c *Conn) endLocked(err error) {
	if !c.ended {
		c.ended, c.err = true, err
		close(c.gone)
	}
}

// onIdle: no GET for IdleTimeout. An open Conn is lost (its session
// waits for a resume); a closed one is forgotten.
func (c *Conn) onIdle() {
	c.mu.Lock()
	if c.poll != nil {
		c.mu.Unlock()
		return
	}
	// Forgotten before Read fails: whoever hears of the loss finds the
	// token gone. (Lock order: Conn.mu, then Server.mu.)
	c.srv.forget(c)
	c.endLocked(ErrLost)
	c.closed, c.drained, c.out = true, true, nil
	c.mu.Unlock()
}

// Deliver hands frames to Read, waiting for room while ctx lasts. It is
// how the first POST, read before its Conn existed, gets in.
func (c *Conn) Deliver(ctx context.Context, frames [][]byte) error {
	for _, f := range frames {
		select {
		case c.in <- f:
		case <-c.gone:
			return ErrLost
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ReadBody reads a POST body of one frame or a JSON array of frames.
func (s *Server) ReadBody(w http.ResponseWriter, r *http.Request) ([][]byte, error) {
	// The largest acceptable body: every frame at its largest, the commas
	// and brackets, and some white space.
	limit := s.opts.MaxFrameBytes*int64(s.opts.MaxBatch) + int64(s.opts.MaxBatch) + 64
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return nil, ErrTooLarge
	}
	if err != nil {
		return nil, err
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, ErrBadBody
	}
	var frames []json.RawMessage
	if body[0] == '[' {
		if json.Unmarshal(body, &frames) != nil {
			return nil, ErrBadBody
		}
	} else {
		frames = []json.RawMessage{body}
	}
	if len(frames) == 0 {
		return nil, ErrBadBody
	}
	if len(frames) > s.opts.MaxBatch {
		return nil, ErrTooLarge
	}
	out := make([][]byte, len(frames))
	for i, f := range frames {
		if int64(len(f)) > s.opts.MaxFrameBytes {
			return nil, ErrTooLarge
		}
		out[i] = f
	}
	return out, nil
}

// ServePost reads a POST's frames into the Conn. 204 once they are
// taken; 413 over the limits; 400 for a body that is no frame; 410 when
// the Conn is gone.
func (c *Conn) ServePost(w http.ResponseWriter, r *http.Request) {
	frames, err := c.srv.ReadBody(w, r)
	if err != nil {
		WriteError(w, err)
		return
	}
	if len(frames) == 1 && string(frames[0]) == "ping" {
		c.servePing(w)
		return
	}
	if err := c.Deliver(r.Context(), frames); err != nil {
		WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// servePing answers a keepalive ping: the 204 is the pong. It is no
// frame and never reaches Read.
func (c *Conn) servePing(w http.ResponseWriter) {
	c.mu.Lock()
	f := c.textPing
	c.mu.Unlock()
	answer, err := true, error(nil)
	if f != nil {
		answer, err = f()
	}
	if err != nil {
		c.Close(websocket.StatusPolicyViolation, "frame flood")
	}
	if !answer || err != nil {
		http.Error(w, "longpoll: ping over the frame budget", http.StatusTooManyRequests)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ServeDelete is the client's logout: Read fails with close code 1000.
func (c *Conn) ServeDelete(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	c.srv.forget(c)
	c.endLocked(websocket.CloseError{Code: websocket.StatusNormalClosure, Reason: "logout"})
	c.mu.Unlock()
	c.CloseNow()
	w.WriteHeader(http.StatusNoContent)
}

// ServeGet holds a GET until frames are queued (200, a JSON array), the
// hold time passes (204), or a newer GET replaces it (409). Only one GET
// is held per Conn. A response that carries frames and fails to be
// written drops the Conn: the session resends them on the resume.
func (c *Conn) ServeGet(w http.ResponseWriter, r *http.Request) {
	p := &poll{replaced: make(chan struct{})}
	c.mu.Lock()
	if c.drained {
		c.mu.Unlock()
		WriteError(w, ErrLost)
		return
	}
	if c.poll != nil {
		close(c.poll.replaced)
	}
	c.poll = p
	c.idle.Stop()
	c.mu.Unlock()
	hold := time.NewTimer(c.srv.opts.Hold)
	defer hold.Stop()
	for {
		c.mu.Lock()
		if c.poll != p {
			c.mu.Unlock()
			// The wake-up this GET may have taken was the newer one's.
			c.wake()
			http.Error(w, "longpoll: replaced by a newer poll", http.StatusConflict)
			return
		}
		if len(c.out) > 0 || c.closed {
			c.answerLocked(w)
			return
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-p.replaced:
		case <-hold.C:
			c.mu.Lock()
			if c.poll == p && len(c.out) == 0 && !c.closed {
				c.releaseLocked()
				c.mu.Unlock()
				w.WriteHeader(http.StatusNoContent)
				return
			}
			c.mu.Unlock()
		case <-r.Context().Done():
			c.mu.Lock()
			if c.poll == p {
				c.releaseLocked()
			}
			c.mu.Unlock()
			return
		}
	}
}

// releaseLocked ends the held poll: the idle clock runs again.
func (c *Conn) releaseLocked() {
	c.poll = nil
	c.idle.Reset(c.srv.opts.IdleTimeout)
}

// answerLocked writes the queued frames, and the close when there is
// one, and unlocks c.mu.
func (c *Conn) answerLocked(w http.ResponseWriter) {
	batch := c.out
	c.out = nil
	closing := c.closed && !c.drained
	gone := c.drained
	code, reason := c.code, c.reason
	if c.closed {
		c.drained = true
	}
	c.releaseLocked()
	c.mu.Unlock()
	if gone {
		WriteError(w, ErrLost)
		return
	}
	if closing {
		c.srv.forget(c)
		w.Header().Set(HeaderCloseCode, strconv.Itoa(int(code)))
		w.Header().Set(HeaderCloseReason, reason)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(Batch(batch)); err != nil && !closing {
		c.CloseNow()
	}
}

// Batch encodes frames as a JSON array.
func Batch(frames [][]byte) []byte {
	n := 2
	for _, f := range frames {
		n += len(f) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, f := range frames {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f...)
	}
	return append(b, ']')
}

// WriteError answers a request that failed with err's status.
func WriteError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrTooLarge):
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
	case errors.Is(err, ErrBadBody):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrLost):
		http.Error(w, err.Error(), http.StatusGone)
	default:
		// The client went away mid-request: nobody reads this.
		http.Error(w, "longpoll: request failed", http.StatusBadRequest)
	}
}
