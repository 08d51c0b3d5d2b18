package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/coder/websocket"
)

// The long-poll headers (docs/protocol.md §1.6; transport/longpoll).
const (
	pollTokenHeader   = "Jsonrtc-Poll-Token"
	pollCloseCode     = "Jsonrtc-Close-Code"
	pollCloseReason   = "Jsonrtc-Close-Reason"
	pollFetchedFrames = 64 // frames fetched and not yet read, at most
)

var errPollLost = errors.New("client: long-poll connection lost")

// pollSocket is the long-poll transport seen as a WebSocket: Write POSTs
// a frame (the first one, the connect, opens the connection and takes its
// token), and a poller goroutine keeps one GET held and hands what it
// returns to Read. Any failed request ends it, as a broken TCP connection
// ends a WebSocket: the client resumes.
type pollSocket struct {
	hc     *http.Client
	owned  *http.Transport // hc's, when this socket made it
	url    string
	header http.Header
	limit  int64

	ctx    context.Context
	cancel context.CancelFunc
	in     chan []byte
	done   chan struct{}
	once   sync.Once
	err    error
	wg     sync.WaitGroup

	mu    sync.Mutex
	token string
	// ended is set by fail, under mu: no poller starts after it, so that
	// the Wait of Close and CloseNow never runs beside the poller's Add
	// (sync.WaitGroup: an Add from zero must happen before the Wait).
	ended bool
}

// dialPoll makes a long-poll conn. Nothing is sent before the connect:
// the connection opens with it.
func dialPoll(ctx context.Context, o *Options) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := &pollSocket{url: o.PollURL, header: o.Header, limit: o.ReadLimit,
		in: make(chan []byte, pollFetchedFrames), done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	c := newConn(p, o)
	hc := o.HTTPClient
	if hc == nil {
		d := o.NetDial
		if d == nil {
			d = (&net.Dialer{}).DialContext
		}
		// Keep-alives on: a POST and the held GET each keep theirs. The
		// conn keeps no raw connection: its kill is CloseNow, which
		// cancels both requests, and so cuts both connections.
		p.owned = &http.Transport{MaxConnsPerHost: 2, DialContext: d}
		hc = &http.Client{Transport: p.owned}
	}
	p.hc = hc
	return c, nil
}

// fail ends the socket with err (the first one stays).
func (p *pollSocket) fail(err error) {
	p.once.Do(func() {
		p.mu.Lock()
		p.ended = true
		p.mu.Unlock()
		p.err = err
		close(p.done)
		p.cancel()
		if p.owned != nil {
			// A transport per socket: its kept-alive connections go with it.
			p.owned.CloseIdleConnections()
		}
	})
}

func (p *pollSocket) request(method string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(p.ctx, method, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	p.mu.Lock()
	if p.token != "" {
		req.Header.Set(pollTokenHeader, p.token)
	}
	p.mu.Unlock()
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return p.hc.Do(req)
}

// pollMaxBatch is the most frames a POST carries: the gateway's
// longpoll.max_batch default.
const pollMaxBatch = 32

func (p *pollSocket) maxBatch() int { return pollMaxBatch }

func isPing(data []byte) bool { return string(data) == "ping" }

// writeBatch POSTs frames as one JSON array; a keepalive ping among them
// goes on its own afterwards (it is no frame).
func (p *pollSocket) writeBatch(frames [][]byte) error {
	ping := slices.ContainsFunc(frames, isPing)
	if ping {
		frames = slices.DeleteFunc(slices.Clone(frames), isPing)
	}
	if len(frames) > 0 {
		if err := p.post(append(append([]byte{'['}, bytes.Join(frames, []byte{','})...), ']')); err != nil {
			return err
		}
	}
	if ping {
		return p.ping()
	}
	return nil
}

// Write POSTs one frame, or the keepalive ping.
func (p *pollSocket) Write(_ context.Context, _ websocket.MessageType, data []byte) error {
	if isPing(data) {
		return p.ping()
	}
	return p.post(data)
}

// ping POSTs the keepalive ping (docs/protocol.md §1.6): its 204 is the
// pong, handed to Read as a WebSocket's would be. A 429 (over the frame
// budget) gets no pong, as a denied ping on a WebSocket gets none.
func (p *pollSocket) ping() error {
	resp, err := p.request(http.MethodPost, []byte("ping"))
	if err != nil {
		p.fail(err)
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		select {
		case p.in <- []byte("pong"):
			return nil
		case <-p.done:
			return p.err
		}
	case http.StatusTooManyRequests:
		return nil
	}
	err = fmt.Errorf("client: long-poll ping: %s", resp.Status)
	p.fail(err)
	return err
}

// post sends a POST. The first opens the connection: its answer carries
// the token, and the poller starts. A refusal of it is a
// *HandshakeError, as a refused WebSocket upgrade is.
func (p *pollSocket) post(data []byte) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.mu.Lock()
	opening := p.token == ""
	p.mu.Unlock()
	resp, err := p.request(http.MethodPost, data)
	if err != nil {
		p.fail(err)
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("client: long-poll POST: %s", resp.Status)
		if opening {
			err = &HandshakeError{Status: resp.StatusCode, Err: err, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
		}
		p.fail(err)
		return err
	}
	if opening {
		token := resp.Header.Get(pollTokenHeader)
		if token == "" {
			err := errors.New("client: long-poll: no token in the answer to the connect")
			p.fail(err)
			return err
		}
		p.mu.Lock()
		p.token = token
		ended := p.ended
		if !ended {
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if ended {
			// Closed while the connect was answered.
			<-p.done
			return p.err
		}
		go p.poll()
	}
	return nil
}

// poll keeps a GET held until the socket ends.
func (p *pollSocket) poll() {
	defer p.wg.Done()
	for {
		resp, err := p.request(http.MethodGet, nil)
		if err != nil {
			p.fail(err)
			return
		}
		err = p.take(resp)
		resp.Body.Close()
		if err != nil {
			p.fail(err)
			return
		}
	}
}

// take hands a GET's frames to Read; an error ends the socket.
func (p *pollSocket) take(resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("%w: GET %s", errPollLost, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.limit*pollFetchedFrames))
	if err != nil {
		return err
	}
	var frames []json.RawMessage
	if err := json.Unmarshal(body, &frames); err != nil {
		return fmt.Errorf("client: long-poll answer: %w", err)
	}
	for _, f := range frames {
		select {
		case p.in <- f:
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
	if c := resp.Header.Get(pollCloseCode); c != "" {
		code, _ := strconv.Atoi(c)
		return websocket.CloseError{Code: websocket.StatusCode(code), Reason: resp.Header.Get(pollCloseReason)}
	}
	return nil
}

// Read returns the next frame fetched, then the error that ended the
// socket once every frame fetched before it is read.
func (p *pollSocket) Read(_ context.Context) (websocket.MessageType, []byte, error) {
	select {
	case f := <-p.in:
		return websocket.MessageText, f, nil
	default:
	}
	select {
	case f := <-p.in:
		return websocket.MessageText, f, nil
	case <-p.done:
		select {
		case f := <-p.in:
			return websocket.MessageText, f, nil
		default:
		}
		return 0, nil, p.err
	}
}

// Close with 1000 is the logout: a DELETE ends the session's connection.
func (p *pollSocket) Close(code websocket.StatusCode, reason string) error {
	var err error
	p.mu.Lock()
	open := p.token != ""
	p.mu.Unlock()
	if code == websocket.StatusNormalClosure && open {
		var resp *http.Response
		if resp, err = p.request(http.MethodDelete, nil); err == nil {
			resp.Body.Close()
		}
	}
	p.fail(websocket.CloseError{Code: code, Reason: reason})
	p.wg.Wait()
	return err
}

// CloseNow drops the socket: the requests under way are cancelled.
func (p *pollSocket) CloseNow() error {
	p.fail(errPollLost)
	p.wg.Wait()
	return nil
}
