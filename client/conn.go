package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// conn is one WebSocket with its reader and writer goroutines. The loop
// owns it; the goroutines report to the loop through in.
type conn struct {
	ws     socket
	ctx    context.Context
	cancel context.CancelFunc
	// The write queue: a slice rather than a channel, so that a socket
	// costs memory only for what is queued. It holds at most maxQueue
	// frames: a full retained window plus room for acks and pings.
	qmu      sync.Mutex
	queue    [][]byte
	closed   bool
	maxQueue int
	wake     chan struct{} // capacity 1: the queue changed
	wg       sync.WaitGroup
	// writerDone is closed when the writer exits.
	writerDone chan struct{}

	rawMu sync.Mutex
	raw   net.Conn // the TCP connection, when NetDial made it
}

// socket is what a conn needs of its transport: a *websocket.Conn, or a
// long-poll connection (pollSocket) that behaves as one.
type socket interface {
	Read(ctx context.Context) (websocket.MessageType, []byte, error)
	Write(ctx context.Context, typ websocket.MessageType, data []byte) error
	Close(code websocket.StatusCode, reason string) error
	CloseNow() error
}

// batchWriter is a socket that sends several frames at once (long-poll:
// a POST of a JSON array), up to maxBatch.
type batchWriter interface {
	maxBatch() int
	writeBatch(frames [][]byte) error
}

// inbound is what a conn's reader hands to the loop: one text frame, or
// the error that ended the socket.
type inbound struct {
	c    *conn
	data []byte
	err  error
}

// spareMax is the largest write batch whose slice the writer keeps.
const spareMax = 16

var errWriteTimeout = errors.New("client: write timed out")

// queueSlack is the write queue's room beyond the retained window, for
// frames that are not retained (acknowledgements, pings, raw frames).
const queueSlack = 256

// dialConn opens a transport: each of Options.Transports in turn, until
// one opens. Every reconnect starts again from the first, so a client
// that fell back to long-poll goes back to WebSocket once it opens.
func dialConn(ctx context.Context, o *Options) (*conn, error) {
	var err error
	for _, t := range o.Transports {
		var c *conn
		switch t {
		case TransportLongPoll:
			c, err = dialPoll(ctx, o)
		default:
			c, err = dialWebSocket(ctx, o)
		}
		if err == nil || ctx.Err() != nil {
			return c, err
		}
		o.Logger.Info("jsonrtc client: transport did not open", "transport", t, "err", err)
	}
	return nil, err
}

// newConn sets up a conn over sock; it starts no goroutine.
func newConn(sock socket, o *Options) *conn {
	c := &conn{ws: sock}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wake = make(chan struct{}, 1)
	c.maxQueue = o.Limits.WindowFrames + queueSlack
	if o.Limits.WindowFrames <= 0 {
		c.maxQueue = 1024 + queueSlack
	}
	c.writerDone = make(chan struct{})
	return c
}

// dialWebSocket performs the WebSocket handshake. It starts no goroutine.
func dialWebSocket(ctx context.Context, o *Options) (*conn, error) {
	c := &conn{}
	hc := o.HTTPClient
	if hc == nil {
		d := o.NetDial
		if d == nil {
			d = (&net.Dialer{}).DialContext
		}
		hc = &http.Client{Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := d(ctx, network, addr)
				if err == nil {
					c.rawMu.Lock()
					c.raw = nc
					c.rawMu.Unlock()
				}
				return nc, err
			},
		}}
	}
	ws, resp, err := websocket.Dial(ctx, o.URL, &websocket.DialOptions{
		HTTPClient:      hc,
		HTTPHeader:      o.Header,
		Subprotocols:    []string{o.Subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil {
			return nil, &HandshakeError{Status: resp.StatusCode, Err: err, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
		}
		c.kill()
		return nil, err
	}
	if got := ws.Subprotocol(); got != o.Subprotocol {
		ws.CloseNow()
		c.kill()
		return nil, fmt.Errorf("client: gateway chose subprotocol %q, want %q", got, o.Subprotocol)
	}
	ws.SetReadLimit(o.ReadLimit)
	nc := newConn(ws, o)
	c.rawMu.Lock()
	nc.raw = c.raw
	c.rawMu.Unlock()
	return nc, nil
}

// start runs the reader and writer; they report to in until stopped.
func (c *conn) start(in chan<- inbound, writeTimeout time.Duration, onFrame func(bool, []byte)) {
	c.wg.Add(2)
	go c.reader(in, onFrame)
	go c.writer(writeTimeout, onFrame)
}

func (c *conn) reader(in chan<- inbound, onFrame func(bool, []byte)) {
	defer c.wg.Done()
	for {
		// No context: one would cost websocket a context.AfterFunc per
		// frame, and stop, logout and kill end a Read by closing the
		// socket anyway.
		typ, data, err := c.ws.Read(context.Background())
		if err == nil && typ != websocket.MessageText {
			err = errors.New("client: binary frame from the gateway")
			c.ws.Close(websocket.StatusUnsupportedData, "binary frame")
		}
		if err == nil && onFrame != nil {
			onFrame(false, data)
		}
		select {
		case in <- inbound{c: c, data: data, err: err}:
		case <-c.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *conn) writer(timeout time.Duration, onFrame func(bool, []byte)) {
	defer c.wg.Done()
	defer close(c.writerDone)
	// One watchdog for every write, as a write's context deadline would
	// do (websocket closes the socket when it expires) without a context,
	// a timer and an AfterFunc per frame.
	stuck := time.AfterFunc(time.Hour, func() { c.ws.CloseNow() })
	stuck.Stop()
	defer stuck.Stop()
	// The slice of the last batch is the queue's next one, so that
	// queueing a frame allocates nothing; after a burst it is let go.
	var spare [][]byte
	for {
		c.qmu.Lock()
		batch, closed := c.queue, c.closed
		c.queue = spare
		c.qmu.Unlock()
		spare = nil
		// A long-poll socket takes what queued as few POSTs; a WebSocket
		// a frame at a time.
		n := 1
		bw, batches := c.ws.(batchWriter)
		if batches {
			n = bw.maxBatch()
		}
		var k int
		for rest := batch; len(rest) > 0; rest = rest[k:] {
			k = min(n, len(rest))
			var err error
			stuck.Reset(timeout)
			if k == 1 {
				if onFrame != nil {
					onFrame(true, rest[0])
				}
				err = c.ws.Write(context.Background(), websocket.MessageText, rest[0])
			} else {
				for _, data := range rest[:k] {
					if onFrame != nil {
						onFrame(true, data)
					}
				}
				err = bw.writeBatch(rest[:k])
			}
			if !stuck.Stop() && err == nil {
				err = errWriteTimeout // closed as the write finished
			}
			if err != nil {
				// The reader sees the socket fail and tells the loop.
				c.ws.CloseNow()
				return
			}
		}
		if cap(batch) <= spareMax {
			clear(batch)
			spare = batch[:0]
		}
		if closed {
			return
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-c.wake:
		case <-c.ctx.Done():
			return
		}
	}
}

// write queues data; false means the queue is full and the socket must be
// given up (its frames are retained and will be resent on resume).
func (c *conn) write(data []byte) bool {
	c.qmu.Lock()
	if c.closed || len(c.queue) >= c.maxQueue {
		c.qmu.Unlock()
		return false
	}
	c.queue = append(c.queue, data)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// kill closes the TCP connection without a WebSocket close frame.
func (c *conn) kill() {
	c.rawMu.Lock()
	raw := c.raw
	c.rawMu.Unlock()
	if raw != nil {
		raw.Close()
	} else if c.ws != nil {
		c.ws.CloseNow()
	}
}

// stop tears the socket down abruptly and waits for its goroutines.
func (c *conn) stop() {
	c.kill()
	c.ws.CloseNow()
	c.cancel()
	c.wg.Wait()
}

// logout flushes the write queue and closes with 1000, the logout of
// docs/protocol.md §4.7, then waits for the goroutines.
func (c *conn) logout() error {
	c.qmu.Lock()
	c.closed = true
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.writerDone
	err := c.ws.Close(websocket.StatusNormalClosure, "logout")
	c.cancel()
	c.wg.Wait()
	c.kill()
	return err
}
