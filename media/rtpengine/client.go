package rtpengine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTimeout is returned when rtpengine did not answer a request within
// Options.Timeout (retransmissions included).
var ErrTimeout = errors.New("rtpengine: no answer")

// ErrClosed is returned by requests on a closed Client.
var ErrClosed = errors.New("rtpengine: client closed")

// Error is rtpengine's answer "result: error" to a request, with its
// "error-reason".
type Error struct {
	Command string
	Reason  string
}

func (e *Error) Error() string {
	return "rtpengine: " + e.Command + ": " + e.Reason
}

// Controller is what the Adapter needs of rtpengine: one Client, or later
// a pool of them.
type Controller interface {
	Ping(ctx context.Context) error
	Offer(ctx context.Context, r *Request) (*Response, error)
	Answer(ctx context.Context, r *Request) (*Response, error)
	Delete(ctx context.Context, r *Request) (*Response, error)
	Query(ctx context.Context, r *Request) (*Response, error)
}

// Options tunes a Client; nil means the defaults.
type Options struct {
	// Retransmit is the interval between copies of an unanswered request
	// (default 500ms).
	Retransmit time.Duration
	// Timeout bounds a request, retransmissions included (default 3s),
	// unless its context ends first.
	Timeout time.Duration
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	if v.Retransmit <= 0 {
		v.Retransmit = 500 * time.Millisecond
	}
	if v.Timeout <= 0 {
		v.Timeout = 3 * time.Second
	}
	return v
}

// maxReply bounds a reply datagram: rtpengine answers with the rewritten
// SDP, which for a WebRTC call with many candidates stays well below this.
const maxReply = 65535

// Client talks to one rtpengine instance over one UDP socket. Requests may
// be made from many goroutines; replies are matched to them by cookie.
type Client struct {
	conn *net.UDPConn
	opt  Options
	done chan struct{} // closed when the read loop exits

	mu      sync.Mutex
	pending map[string]chan map[string]any // by cookie
	closed  bool

	retransmits, timeouts, stray atomic.Uint64
}

// Stats counts what a Client saw: a pool's health check and the
// gateway's metrics read them.
type Stats struct {
	// Retransmits: copies of requests sent again, unanswered.
	Retransmits uint64
	// Timeouts: requests that got no answer at all (ErrTimeout).
	Timeouts uint64
	// Stray: datagrams dropped because no request waited for them: late
	// answers to copies of an answered request, or garbage.
	Stray uint64
}

// Stats returns the counters so far.
func (c *Client) Stats() Stats {
	return Stats{Retransmits: c.retransmits.Load(), Timeouts: c.timeouts.Load(), Stray: c.stray.Load()}
}

// Dial opens a Client to the ng listener at addr ("host:port"). Close it
// to release its socket and read goroutine.
func Dial(ctx context.Context, addr string, opt *Options) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("rtpengine: dial %s: %w", addr, err)
	}
	cl := &Client{
		conn:    c.(*net.UDPConn),
		opt:     opt.withDefaults(),
		done:    make(chan struct{}),
		pending: map[string]chan map[string]any{},
	}
	go cl.readLoop()
	return cl, nil
}

// Close closes the socket and returns once the read goroutine has exited;
// pending requests fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	err := c.conn.Close()
	<-c.done
	return err
}

// readLoop hands each reply to the request waiting for its cookie. A
// reply nobody waits for (a late answer to a retransmission, or garbage)
// is dropped and counted (Stats.Stray): the request it belonged to has
// already been answered or has given up.
func (c *Client) readLoop() {
	defer close(c.done)
	buf := make([]byte, maxReply)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable surfaces as a read error on a
			// connected UDP socket: rtpengine is not (yet) there; the
			// request's retransmission and timeout handle it.
			continue
		}
		cookie, body, ok := bytes.Cut(buf[:n], []byte(" "))
		v, err := decode(body)
		dict, isDict := v.(map[string]any)
		if !ok || err != nil || !isDict {
			c.stray.Add(1)
			continue
		}
		c.mu.Lock()
		ch := c.pending[string(cookie)]
		delete(c.pending, string(cookie))
		c.mu.Unlock()
		if ch == nil {
			c.stray.Add(1)
			continue
		}
		ch <- dict // buffered, one reply per cookie
	}
}

// do sends the command with the arguments in req and waits for its reply.
func (c *Client) do(ctx context.Context, command string, req map[string]any) (map[string]any, error) {
	req["command"] = command
	cookie := newCookie()
	msg, err := encode([]byte(cookie+" "), req)
	if err != nil {
		return nil, err
	}
	ch := make(chan map[string]any, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.pending[cookie] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cookie)
		c.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(ctx, c.opt.Timeout)
	defer cancel()
	tick := time.NewTicker(c.opt.Retransmit)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			c.retransmits.Add(1)
		}
		// The same cookie each time: rtpengine executes it once and
		// answers copies from its cache.
		if _, err := c.conn.Write(msg); err != nil && errors.Is(err, net.ErrClosed) {
			return nil, ErrClosed
		}
		select {
		case r := <-ch:
			if res, _ := r["result"].(string); res == "error" {
				reason, _ := r["error-reason"].(string)
				return r, &Error{Command: command, Reason: reason}
			}
			return r, nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				c.timeouts.Add(1)
				return nil, fmt.Errorf("%w to %s after %v", ErrTimeout, command, c.opt.Timeout)
			}
			return nil, ctx.Err()
		case <-c.done:
			return nil, ErrClosed
		case <-tick.C:
		}
	}
}

func newCookie() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Ping checks that rtpengine answers ("result: pong").
func (c *Client) Ping(ctx context.Context) error {
	r, err := c.do(ctx, "ping", map[string]any{})
	if err != nil {
		return err
	}
	if res, _ := r["result"].(string); res != "pong" {
		return fmt.Errorf("rtpengine: ping answered %q", res)
	}
	return nil
}

// Offer hands rtpengine an offer (r.SDP) and returns the rewritten one.
func (c *Client) Offer(ctx context.Context, r *Request) (*Response, error) {
	return c.sdpCommand(ctx, "offer", r)
}

// Answer hands rtpengine the answer to an earlier Offer of the same call.
func (c *Client) Answer(ctx context.Context, r *Request) (*Response, error) {
	return c.sdpCommand(ctx, "answer", r)
}

// Delete ends the call (or, with a to-tag or via-branch, one branch of it).
func (c *Client) Delete(ctx context.Context, r *Request) (*Response, error) {
	return c.sdpCommand(ctx, "delete", r)
}

// Query reports on a call; an unknown call-id is an *Error.
func (c *Client) Query(ctx context.Context, r *Request) (*Response, error) {
	return c.sdpCommand(ctx, "query", r)
}

// Uptime returns how long rtpengine has run (the ng statistics
// command's totalstatistics.uptime, in whole seconds): a Pool reads a
// restart from it, which ping cannot show.
func (c *Client) Uptime(ctx context.Context) (time.Duration, error) {
	r, err := c.do(ctx, "statistics", map[string]any{})
	if err != nil {
		return 0, err
	}
	st, _ := r["statistics"].(map[string]any)
	tot, _ := st["totalstatistics"].(map[string]any)
	var secs int64
	switch v := tot["uptime"].(type) {
	case string: // rtpengine 10.5 writes it as a string
		secs, err = strconv.ParseInt(v, 10, 64)
	case int64:
		secs = v
	default:
		err = errors.New("no uptime")
	}
	if err != nil || secs < 0 {
		return 0, fmt.Errorf("rtpengine: statistics without a usable totalstatistics.uptime (%v)", tot["uptime"])
	}
	return time.Duration(secs) * time.Second, nil
}

// List returns the call-ids rtpengine knows (at most limit of them).
func (c *Client) List(ctx context.Context, limit int) ([]string, error) {
	r, err := c.do(ctx, "list", map[string]any{"limit": int64(limit)})
	if err != nil {
		return nil, err
	}
	calls, _ := r["calls"].([]any)
	ids := make([]string, 0, len(calls))
	for _, v := range calls {
		if s, ok := v.(string); ok {
			ids = append(ids, s)
		}
	}
	return ids, nil
}

func (c *Client) sdpCommand(ctx context.Context, command string, r *Request) (*Response, error) {
	if r == nil || r.CallID == "" {
		return nil, fmt.Errorf("rtpengine: %s without a call-id", command)
	}
	m, err := c.do(ctx, command, r.dict())
	if err != nil {
		return nil, err
	}
	return newResponse(m), nil
}
