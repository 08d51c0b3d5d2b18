package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
)

// pipeNet is an in-memory network: Dial hands the server end of a
// net.Pipe to Accept. Blocking on it is durable for testing/synctest,
// so tests fake time.
type pipeNet struct {
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	refuse atomic.Bool
	dialAt chan time.Time // when each dial happened
	mu     sync.Mutex
	last   net.Conn // the client end of the latest connection
}

func newPipeNet() *pipeNet {
	return &pipeNet{ch: make(chan net.Conn), done: make(chan struct{}), dialAt: make(chan time.Time, 256)}
}

func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.ch:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeNet) Close() error { p.once.Do(func() { close(p.done) }); return nil }

func (p *pipeNet) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func (p *pipeNet) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	select {
	case p.dialAt <- time.Now():
	default:
	}
	if p.refuse.Load() {
		return nil, errors.New("connection refused")
	}
	c1, c2 := net.Pipe()
	select {
	case p.ch <- c2:
		p.mu.Lock()
		p.last = c1
		p.mu.Unlock()
		return c1, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, errors.New("connection refused")
	}
}

// fake is a minimal gateway for unit tests: one session at a time, run
// with the same session machine as the real one.
type fake struct {
	t    testing.TB
	net  *pipeNet
	srv  *http.Server
	serr chan error

	mu        sync.Mutex
	st        *session.State
	cur       *websocket.Conn
	sessions  int
	identity  string
	refuse    bool // refuse resumes
	noPong    bool
	blackhole bool // drop every inbound frame (lost in flight) until the socket goes
	nextResp  func(*protocol.Frame) *protocol.Frame
	// refuseWith, when set, says how to refuse handshake n (from 1) to
	// host; its zero refusal lets it through.
	refuseWith func(n int, host string) refusal
	handshakes int

	got   chan *protocol.Frame // frames delivered in order, once
	raw   chan []byte          // every text frame received
	conns chan struct{}        // one per accepted socket
	// closes gets each socket's close status as the fake reads it (-1:
	// no close frame).
	closes chan websocket.StatusCode
	wg     sync.WaitGroup

	closeOnce sync.Once
}

func newFake(t testing.TB) *fake {
	f := &fake{t: t, net: newPipeNet(), serr: make(chan error, 1), identity: "alice@example.com",
		got: make(chan *protocol.Frame, 4096), raw: make(chan []byte, 4096), conns: make(chan struct{}, 64), closes: make(chan websocket.StatusCode, 64)}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.handle)}
	go func() { f.serr <- f.srv.Serve(f.net) }()
	t.Cleanup(f.close)
	return f
}

func (f *fake) close() { f.closeOnce.Do(f.shutdown) }

func (f *fake) shutdown() {
	f.srv.Close()
	<-f.serr
	f.mu.Lock()
	if f.cur != nil {
		f.cur.CloseNow()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fake) opts() Options {
	return Options{URL: "ws://pipe/ws/", NetDial: f.net.Dial, Identity: f.identity}
}

// refusal is how the fake refuses a connect: an HTTP status instead of
// the upgrade, an error code answering the connect, or a close after it.
type refusal struct {
	status int
	code   int
	close  websocket.StatusCode
	after  int // Retry-After of the status, retry_after of the code (seconds)
	// challenge: the code (401) carries authenticate, and a connect
	// with authorization passes.
	challenge bool
}

func (f *fake) handle(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.handshakes++
	var refuse refusal
	if f.refuseWith != nil {
		refuse = f.refuseWith(f.handshakes, r.Host)
	}
	f.mu.Unlock()
	if refuse.status != 0 {
		if refuse.after != 0 {
			w.Header().Set("Retry-After", strconv.Itoa(refuse.after))
		}
		http.Error(w, "fake: refused", refuse.status)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"jsonrtc"}})
	if err != nil {
		return
	}
	f.wg.Add(1)
	defer f.wg.Done()
	f.mu.Lock()
	if f.cur != nil {
		f.cur.CloseNow()
	}
	f.cur = ws
	f.blackhole = false
	f.mu.Unlock()
	f.conns <- struct{}{}
	defer ws.CloseNow()
	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			select {
			case f.closes <- websocket.CloseStatus(err):
			default:
			}
			return
		}
		f.raw <- data
		f.mu.Lock()
		if f.cur != ws || f.blackhole {
			f.mu.Unlock()
			continue
		}
		if string(data) == "ping" {
			if !f.noPong {
				ws.Write(context.Background(), websocket.MessageText, []byte("pong"))
			}
			f.mu.Unlock()
			continue
		}
		fr, err := protocol.Decode(data)
		if err != nil {
			f.writeLocked(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageRegister},
				Header: protocol.Header{ErrorCode: 400, Reason: err.Error()}})
			f.mu.Unlock()
			continue
		}
		if fr.Header.Action == protocol.ActionConnect && refuse.code != 0 && !(refuse.challenge && len(fr.Header.Authorization) > 0) {
			out := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageRegister,
				AckSequence: fr.Control.Sequence, CorrelationID: fmt.Sprintf("c%d", fr.Control.Sequence)},
				Header: protocol.Header{Action: protocol.ActionConnect, ErrorCode: refuse.code, Reason: "fake: refused"}}
			if refuse.after != 0 {
				out.Header.Ext = []protocol.Ext{{Name: "retry_after", Kind: protocol.ExtNumber, Value: strconv.Itoa(refuse.after)}}
			}
			if refuse.challenge {
				out.Header.Authenticate = json.RawMessage(`{"scheme":"Digest","realm":"example.com","nonce":"n1","method":"REGISTER","uri":"sip:example.com"}`)
			}
			f.writeLocked(out)
			f.mu.Unlock()
			continue
		}
		if fr.Header.Action == protocol.ActionConnect && refuse.close != 0 {
			f.mu.Unlock()
			ws.Close(refuse.close, "fake: refused")
			return
		}
		if fr.Header.Action == protocol.ActionConnect {
			f.connect(ws, fr)
			f.mu.Unlock()
			continue
		}
		if f.st == nil || fr.Control.SessionID != f.st.ID {
			f.mu.Unlock()
			continue
		}
		v, _ := f.st.Receive(fr)
		f.mu.Unlock()
		if v == session.Deliver {
			f.got <- fr
		}
	}
}

func (f *fake) newSession(processed uint64) {
	f.sessions++
	f.st = session.New(fmt.Sprintf("S%d", f.sessions), processed)
}

// connect answers a connect, holding f.mu.
func (f *fake) connect(ws *websocket.Conn, fr *protocol.Frame) {
	resp := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageRegister,
		MessageState: protocol.StateFinal},
		Header: protocol.Header{Action: protocol.ActionConnect, Initiator: f.identity, Target: f.identity, ResponseCode: 200}}
	var resend [][]byte
	switch {
	case !fr.IsReconnect():
		f.newSession(fr.Control.Sequence)
	case f.refuse || f.st == nil || fr.Control.SessionID != f.st.ID || f.st.CheckResume(&fr.Header) != nil:
		// As the gateway does: the reconnect connect stands for the
		// client's sequence 1, its next frame being 2.
		f.newSession(1)
	default:
		resend = f.st.Resume(fr.Header.CSLR.V)
		resp.Header.SSLR = protocol.Seq(f.st.Processed)
	}
	if f.nextResp != nil {
		resp = f.nextResp(resp)
		f.nextResp = nil
	}
	data, err := f.st.Send(resp, session.Limits{}, nil)
	if err != nil {
		f.t.Errorf("fake: %v", err)
		return
	}
	ws.Write(context.Background(), websocket.MessageText, data)
	for _, d := range resend {
		ws.Write(context.Background(), websocket.MessageText, d)
	}
}

func (f *fake) writeLocked(fr *protocol.Frame) {
	if f.cur != nil {
		f.cur.Write(context.Background(), websocket.MessageText, fr.Marshal())
	}
}

// send sends fr in the session, as the gateway would; lost means it is
// retained but never reaches the socket.
func (f *fake) send(fr *protocol.Frame, lost bool) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := f.st.Send(fr, session.Limits{}, nil)
	if err != nil {
		f.t.Fatalf("fake send: %v", err)
	}
	if !lost && f.cur != nil {
		f.cur.Write(context.Background(), websocket.MessageText, data)
	}
	return fr.Control.Sequence
}

func (f *fake) sendRaw(data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil {
		f.cur.Write(context.Background(), websocket.MessageText, data)
	}
}

// drop closes the server's socket without a close frame.
func (f *fake) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil {
		f.cur.CloseNow()
	}
}

func (f *fake) set(fn func(f *fake)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func (f *fake) state() *session.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Clone()
}

// next returns the next frame the fake delivered.
func (f *fake) next(t testing.TB) *protocol.Frame {
	t.Helper()
	fr, ok := <-f.got
	if !ok {
		t.Fatal("fake: no more frames")
	}
	return fr
}

// nextRaw returns the next text frame the fake received, skipping pings
// unless wanted.
func (f *fake) nextRaw(t testing.TB, pings bool) []byte {
	t.Helper()
	for d := range f.raw {
		if string(d) == "ping" && !pings {
			continue
		}
		return d
	}
	t.Fatal("fake: raw closed")
	return nil
}

func msgFrame(body string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging, CorrelationID: "s-" + body},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: "bob@example.com", Target: "alice@example.com"},
		Payload: protocol.EncodePayload(protocol.MessagePayload{ContentType: "text/plain", Body: body}),
	}
}
