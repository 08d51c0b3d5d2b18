package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/session"
)

// ErrNotConnected: SendRaw needs a socket and there is none right now.
var ErrNotConnected = errors.New("client: not connected")

var (
	errPingTimeout    = errors.New("client: no pong from the gateway")
	errConnectTimeout = errors.New("client: no connect response in time")
	errWriteQueueFull = errors.New("client: socket write queue full")
)

// phase is where the loop is in the connection's life.
type phase uint8

const (
	phaseDown       phase = iota // no socket; a retry is scheduled
	phaseDialing                 // a handshake is under way
	phaseConnecting              // new-session connect sent, awaiting its response
	phaseResuming                // reconnect connect sent, awaiting its response
	phaseUp                      // the session runs on cur
	phaseAsleep                  // in standby: no socket, no retry until Wake or a send
)

// Client is one JSONrtc session. Its methods are safe for concurrent use.
type Client struct {
	o      Options
	log    *slog.Logger
	ctx    context.Context // cancelled when the loop exits
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loop and the dialers
	// errcs recycles do's reply channels (every call operation makes
	// one); per client, as a channel may not leave its synctest bubble.
	errcs sync.Pool

	cmds   chan func()
	in     chan inbound
	dialed chan dialResult
	// dials counts the attempts, to rotate through Options.URLs; the
	// loop's.
	dials  int
	events chan Event
	quit   chan struct{} // closed by Close
	done   chan struct{} // closed when the loop has exited
	ready  chan error    // the first connect's outcome, for Dial
	quitMu sync.Once

	mu       sync.Mutex // guards the fields below, read by getters
	sid      string
	ident    string
	ice      iceServers // from the last connect or ice_servers response
	cause    error
	closeErr error
	killable *conn

	timeouts atomic.Uint64 // requests that got no answer in time

	// Owned by the loop goroutine.
	st    *session.State
	cur   *conn
	phase phase
	// closing: Close came while the session had no socket (standby, or
	// between reconnects): the loop resumes it only to log out.
	closing       bool
	everConnected bool
	stopErr       error // set to end the loop
	authTries     int
	lostAt        time.Time
	attempt       int
	dialCancel    context.CancelFunc
	calls         map[string]*Call
	hungUp        []*Call // the last calls we hung up, owed media figures (figuresFor)
	pending       map[string]chan result

	ackT, pingT, retryT, connectT, resumeT *time.Timer
	ackArmed                               bool
	awaitingPong                           bool
	pingStart                              time.Time
	pingWait                               time.Duration
}

type dialResult struct {
	c   *conn
	err error
}

// result answers a pending request.
type result struct {
	code   int
	expiry int // header.expiry of a response
	err    error
	frame  *protocol.Frame // the answer (nil when none came)
}

// Dial connects to the gateway and establishes a new session. It returns
// once the connect response has arrived, or the connect failed: at once,
// or after Options.ConnectAttempts when the gateway refused it for now
// (HTTP 503, error 503, close 1013). The Client then runs until
// Close, or until it gives up for a cause that Err reports; either way
// Events is closed at the end.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		o:       o,
		log:     o.Logger,
		cmds:    make(chan func(), 64),
		in:      make(chan inbound),
		dialed:  make(chan dialResult),
		events:  make(chan Event, o.EventBuffer),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		ready:   make(chan error, 1),
		st:      session.New("", 0),
		calls:   make(map[string]*Call),
		pending: make(map[string]chan result),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	newTimer := func() *time.Timer {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	c.ackT, c.pingT, c.retryT, c.connectT, c.resumeT = newTimer(), newTimer(), newTimer(), newTimer(), newTimer()
	c.wg.Add(1)
	go c.run()
	select {
	case err := <-c.ready:
		if err != nil {
			c.wg.Wait()
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	}
}

// Events returns the session's events. The channel is closed after the
// Client has stopped; read it until then (see the package doc on slow
// readers).
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed once the Client has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

// SessionID is the current session's id.
func (c *Client) SessionID() string { c.mu.Lock(); defer c.mu.Unlock(); return c.sid }

// Identity is the identity the session runs as, from the connect response.
func (c *Client) Identity() string { c.mu.Lock(); defer c.mu.Unlock(); return c.ident }

// Err reports why the Client stopped on its own: nil while it runs and
// after Close.
func (c *Client) Err() error { c.mu.Lock(); defer c.mu.Unlock(); return c.cause }

// Close logs out (WebSocket close 1000: the gateway ends the session and
// its calls) and waits for every goroutine of the Client to exit. A
// session with no socket (in standby, or between reconnects) is resumed
// to log out, for at most ConnectTimeout. It is idempotent; it returns
// the error of the close handshake, if any.
func (c *Client) Close() error {
	c.quitMu.Do(func() { close(c.quit) })
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Kill closes the current TCP connection abruptly, without a WebSocket
// close: for tests, which then watch the client resume on its own.
func (c *Client) Kill() {
	c.mu.Lock()
	k := c.killable
	c.mu.Unlock()
	if k != nil {
		k.kill()
	}
}

// do runs fn on the loop and returns its error.
func (c *Client) do(ctx context.Context, fn func() error) error {
	errc, _ := c.errcs.Get().(chan error)
	if errc == nil {
		errc = make(chan error, 1)
	}
	select {
	case c.cmds <- func() { errc <- fn() }:
	case <-ctx.Done():
		c.errcs.Put(errc)
		return ctx.Err()
	case <-c.done:
		c.errcs.Put(errc)
		return ErrClosed
	}
	select {
	case err := <-errc:
		// Empty again, and fn has sent its one reply: reusable.
		c.errcs.Put(errc)
		return err
	case <-c.done:
		select {
		case err := <-errc:
			c.errcs.Put(errc)
			return err
		default:
			// The loop may still run fn and reply: not reusable.
			return ErrClosed
		}
	}
}

// run is the loop: the only goroutine that touches the session state.
func (c *Client) run() {
	defer c.wg.Done()
	defer c.finish()
	c.startDial()
	quit := c.quit
	for c.stopErr == nil {
		select {
		case fn := <-c.cmds:
			fn()
		case m := <-c.in:
			c.onInbound(m)
		case r := <-c.dialed:
			c.onDialed(r)
		case <-c.ackT.C:
			c.onAckTimer()
		case <-c.pingT.C:
			c.onPingTimer()
		case <-c.retryT.C:
			c.startDial()
		case <-c.connectT.C:
			if c.phase == phaseConnecting || c.phase == phaseResuming {
				c.lost(errConnectTimeout)
			}
		case <-c.resumeT.C:
			switch {
			case c.closing:
				c.fail(ErrClosed) // gave up logging out: the gateway's timeout ends it
			case c.phase != phaseUp:
				c.fail(ErrResumeTimeout)
			}
		case <-quit:
			quit = nil
			c.onClose()
		}
	}
}

// onClose ends the Client at the application's Close. A session with no
// socket is resumed first and logged out once the resume is answered
// (onConnected), so that the gateway ends it now rather than at its
// standby or resume timeout, when a caller would have been kept waiting
// (docs/protocol.md §4.9); the attempt is bounded by ConnectTimeout.
func (c *Client) onClose() {
	if !c.everConnected || c.phase == phaseUp || c.phase == phaseConnecting {
		c.fail(ErrClosed)
		return
	}
	c.closing = true
	c.resumeT.Reset(c.o.ConnectTimeout)
	if c.phase == phaseAsleep {
		c.phase = phaseDown
		c.startDial()
	}
}

// fail ends the Client with cause.
func (c *Client) fail(cause error) {
	if c.stopErr == nil {
		c.stopErr = cause
	}
}

// finish tears everything down when the loop ends.
func (c *Client) finish() {
	cause := c.stopErr
	closedByApp := errors.Is(cause, ErrClosed)
	var closeErr error
	if c.cur != nil {
		if c.phase == phaseUp && (closedByApp || errors.Is(cause, ErrSlowConsumer) || errors.Is(cause, ErrResumeTimeout)) {
			closeErr = c.cur.logout()
		} else {
			// The gateway ended the session or refused it: nothing to
			// log out of.
			c.cur.stop()
		}
		c.cur = nil
	}
	if c.dialCancel != nil {
		c.dialCancel()
	}
	c.cancel()
	for _, t := range []*time.Timer{c.ackT, c.pingT, c.retryT, c.connectT, c.resumeT} {
		t.Stop()
	}
	failErr := cause
	if closedByApp {
		failErr = ErrClosed
	}
	for corr, ch := range c.pending {
		ch <- result{err: failErr}
		delete(c.pending, corr)
	}
	c.mu.Lock()
	c.killable = nil
	c.closeErr = closeErr
	if !closedByApp {
		c.cause = cause
	}
	c.mu.Unlock()
	if !c.everConnected {
		c.ready <- cause
	} else {
		ev := Event{Kind: EventClosed, SessionID: c.st.ID}
		if !closedByApp {
			ev.Err = cause
		}
		// The channel's close below is the signal that always arrives;
		// this event is added when there is room for it.
		select {
		case c.events <- ev:
		default:
		}
		c.log.Info("jsonrtc client closed", "session_id", c.st.ID, "cause", cause)
	}
	close(c.events)
	close(c.done)
}

// emit delivers ev, waiting a bounded time for room (package doc).
func (c *Client) emit(ev Event) {
	if c.stopErr != nil && !errors.Is(c.stopErr, ErrClosed) {
		return
	}
	select {
	case c.events <- ev:
		return
	default:
	}
	c.log.Warn("jsonrtc client: events queue full, waiting for the application", "session_id", c.st.ID)
	t := time.NewTimer(c.o.SlowConsumerTimeout)
	defer t.Stop()
	select {
	case c.events <- ev:
	case <-t.C:
		c.log.Error("jsonrtc client: application too slow to drain events; closing the session", "session_id", c.st.ID)
		c.fail(ErrSlowConsumer)
	}
}

func (c *Client) setKillable(k *conn) {
	c.mu.Lock()
	c.killable = k
	c.mu.Unlock()
}

// startDial starts one handshake in a goroutine of its own, so that the
// loop keeps serving the application (frames sent meanwhile are retained).
func (c *Client) startDial() {
	c.phase = phaseDialing
	ctx, cancel := context.WithTimeout(c.ctx, c.o.ConnectTimeout)
	c.dialCancel = cancel
	c.wg.Add(1)
	o := c.o
	if n := len(o.URLs); n > 0 {
		// Each attempt goes to the next node of the cluster.
		o.URL = o.URLs[c.dials%n]
		o.PollURL = pollURL(o.URL)
	}
	c.dials++
	go func() {
		defer c.wg.Done()
		cn, err := dialConn(ctx, &o)
		select {
		case c.dialed <- dialResult{cn, err}:
		case <-c.ctx.Done():
			if cn != nil {
				cn.ws.CloseNow()
				cn.kill()
			}
		}
	}()
}

func (c *Client) onDialed(r dialResult) {
	c.dialCancel()
	c.dialCancel = nil
	if r.err != nil {
		c.log.Info("jsonrtc client: dial failed", "err", r.err)
		c.lost(r.err)
		return
	}
	c.cur = r.c
	c.setKillable(r.c)
	r.c.start(c.in, c.o.WriteTimeout, c.o.OnFrame)
	if !c.everConnected {
		c.phase = phaseConnecting
		c.sendConnect(nil)
	} else {
		c.phase = phaseResuming
		c.authTries = 0
		c.sendResume(nil)
	}
	c.connectT.Reset(c.o.ConnectTimeout)
}

// sendResume sends the reconnect connect of docs/protocol.md §4.4 (with
// authorization, after a challenge).
func (c *Client) sendResume(authorization []byte) {
	cslr, cslw, csuw := c.st.ResumeHeaders()
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister,
			SessionID: c.st.ID, Version: protocol.Version},
		Header: protocol.Header{Action: protocol.ActionConnect, Initiator: c.identity(), Target: c.identity(),
			CSLR: cslr, CSLW: cslw, CSUW: csuw, Authorization: authorization},
	}
	c.log.Info("jsonrtc client: resuming", "session_id", c.st.ID, "cslr", cslr.V, "cslw", cslw.V, "csuw", csuw.V)
	c.cur.write(f.Marshal())
}

// identity is who we are: the gateway's word once connected, else ours.
func (c *Client) identity() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ident != "" {
		return c.ident
	}
	return c.o.Identity
}

// sendConnect sends a new-session connect (sequence 1, or the next one
// after a challenge).
func (c *Client) sendConnect(authorization []byte) {
	f := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header: protocol.Header{Action: protocol.ActionConnect, Initiator: c.o.Identity, Target: c.o.Identity,
			Authorization: authorization},
	}
	data, err := c.st.Send(f, c.o.Limits, nil)
	if err != nil {
		c.fail(err)
		return
	}
	c.cur.write(data)
}

// lost handles the end of a socket or of an attempt: schedule the next
// attempt, or give up.
func (c *Client) lost(err error) {
	c.dropSocket()
	if !c.everConnected {
		if refusedForNow(err) && c.attempt+1 < c.o.ConnectAttempts {
			// An overloaded gateway says so (docs/protocol.md §4.2): try
			// again later, or another node, rather than give up the
			// first session.
			c.attempt++
			d := c.notBefore(backoff(c.o.ReconnectMin, c.o.ReconnectMax, c.attempt), err)
			c.log.Info("jsonrtc client: connect refused for now, trying again", "err", err, "attempt", c.attempt+1, "after", d)
			// A new socket, a new session: the connect is sequence 1 again.
			c.st = session.New("", 0)
			c.authTries = 0
			c.phase = phaseDown
			c.retryT.Reset(d)
			return
		}
		c.fail(err)
		return
	}
	if terminal(err) {
		c.log.Info("jsonrtc client: the gateway ended the session", "session_id", c.st.ID, "err", err)
		c.fail(err)
		return
	}
	if c.phase == phaseUp {
		c.log.Info("jsonrtc client: socket lost, reconnecting", "session_id", c.st.ID, "err", err)
		c.lostAt = time.Now()
		c.attempt = 0
		c.resumeT.Reset(c.o.ResumeTimeout)
		c.phase = phaseDown
		c.emit(Event{Kind: EventReconnecting, SessionID: c.st.ID, Err: err})
		if c.stopErr != nil {
			return
		}
		c.attempt++
		c.startDial()
		return
	}
	c.phase = phaseDown
	d := c.notBefore(backoff(c.o.ReconnectMin, c.o.ReconnectMax, c.attempt), err)
	c.attempt++
	c.retryT.Reset(d)
}

// notBefore is the wait d before the next attempt, made at least the
// Retry-After (or retry_after) of the refusal err, when there is one and
// the next attempt goes to the node that refused: with Options.URLs it
// goes to another, which the refusing node's word does not concern.
func (c *Client) notBefore(d time.Duration, err error) time.Duration {
	if len(c.o.URLs) > 1 {
		return d
	}
	return max(d, retryAfter(err))
}

// dropSocket stops the current socket, if any, and its timers.
func (c *Client) dropSocket() {
	if c.cur != nil {
		c.cur.stop()
		c.cur = nil
		c.setKillable(nil)
	}
	c.connectT.Stop()
	c.ackT.Stop()
	c.ackArmed = false
	c.pingT.Stop()
	c.awaitingPong = false
}

// backoff is the delay before attempt n (n >= 1): min doubling up to
// max, jittered down by up to half so that clients cut off together do
// not come back together.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// refusedForNow reports whether err is the gateway's refusal of a connect
// that may well pass later or on another node: HTTP 503 at the handshake
// (shutting down, draining, full), error 503 answering the connect, or a
// close 1013 (try again later). A 4xx is final.
func refusedForNow(err error) bool {
	var he *HandshakeError
	if errors.As(err, &he) {
		return he.Status == http.StatusServiceUnavailable
	}
	var fe *FrameError
	if errors.As(err, &fe) {
		return fe.Code == protocol.CodeServiceUnavailable
	}
	return websocket.CloseStatus(err) == websocket.StatusTryAgainLater
}

// terminal reports whether a socket error means the gateway does not
// want this session back: a WebSocket close it chose, other than going
// away or a transient failure, or an identity refused. A resume refused
// for now (HTTP 503, error 503, close 1013) is tried again until the
// resume timeout; one refused 401 or 403, at the handshake or answering
// the resume, is final (docs/protocol.md §4.5): a token refused once is
// refused on every node, and trying again only held the session's
// failure back to the resume timeout.
func terminal(err error) bool {
	var he *HandshakeError
	if errors.As(err, &he) {
		return he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden
	}
	var fe *FrameError
	if errors.As(err, &fe) {
		switch fe.Code {
		case protocol.CodeRequestTimeout, protocol.CodeTemporarilyUnavail, protocol.CodeServiceUnavailable, protocol.CodeServerTimeout:
			return false
		}
		return true
	}
	switch websocket.CloseStatus(err) {
	case -1, websocket.StatusGoingAway, websocket.StatusAbnormalClosure, websocket.StatusInternalError,
		websocket.StatusServiceRestart, websocket.StatusTryAgainLater, websocket.StatusBadGateway:
		return false
	}
	return true
}

// send stamps, retains and (when the socket is up) writes f.
func (c *Client) send(f *protocol.Frame) error {
	data, err := c.st.Send(f, c.o.Limits, nil)
	if err != nil {
		return err
	}
	c.writeUp(data)
	if c.phase == phaseAsleep && f.Control.Type != protocol.TypeAcknowledgement {
		// Retained: the resume it starts delivers it.
		c.wakeUp()
	}
	return nil
}

func (c *Client) writeUp(data []byte) {
	if c.phase != phaseUp || c.cur == nil {
		return // retained; resent on resume
	}
	if !c.cur.write(data) {
		c.lost(errWriteQueueFull)
	}
}

// nextCorr is the client correlation id of the next sequenced frame,
// c<seq> as the SDK makes them.
func (c *Client) nextCorr() string { return "c" + strconv.FormatUint(c.st.NextSeq, 10) }

func (c *Client) onAckTimer() {
	c.ackArmed = false
	if c.phase == phaseUp && c.st.AckOwed() {
		c.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeAcknowledgement, Package: protocol.PackageCall}})
	}
}

func (c *Client) armAck() {
	if !c.ackArmed && c.st.AckOwed() {
		c.ackArmed = true
		c.ackT.Reset(c.o.AckDelay)
	}
}

func (c *Client) armPing() {
	c.awaitingPong = false
	if c.o.PingInterval > 0 && c.phase == phaseUp {
		c.pingT.Reset(c.o.PingInterval)
	}
}

// onPingTimer sends the keepalive ping; unanswered, it repeats at doubling
// intervals until PingGiveUp, then declares the socket dead.
func (c *Client) onPingTimer() {
	if c.phase != phaseUp {
		return
	}
	now := time.Now()
	if !c.awaitingPong {
		c.awaitingPong = true
		c.pingStart = now
		c.pingWait = c.o.PongTimeout
	} else {
		if now.Sub(c.pingStart) >= c.o.PingGiveUp {
			c.lost(errPingTimeout)
			return
		}
		c.pingWait *= 2
	}
	c.writeUp([]byte("ping"))
	if c.cur == nil {
		return
	}
	c.pingT.Reset(min(c.pingWait, c.o.PingGiveUp-now.Sub(c.pingStart)))
}

func (c *Client) onInbound(m inbound) {
	if m.c != c.cur || c.cur == nil {
		return // a socket we already gave up
	}
	if m.err != nil {
		c.lost(m.err)
		return
	}
	c.armPing()
	if string(m.data) == "pong" {
		return
	}
	f, err := protocol.Decode(m.data)
	if err != nil {
		c.log.Warn("jsonrtc client: undecodable frame from the gateway", "session_id", c.st.ID, "err", err)
		c.emit(Event{Kind: EventError, Err: fmt.Errorf("client: undecodable frame from the gateway: %w", err)})
		return
	}
	c.log.Debug("jsonrtc client: frame in", "session_id", c.st.ID, "frame", m.data)
	if c.phase == phaseConnecting || c.phase == phaseResuming {
		if f.Header.Action == protocol.ActionConnect && f.Control.Type != protocol.TypeRequest {
			c.onConnectResponse(f)
			return
		}
		c.log.Warn("jsonrtc client: frame before the connect response ignored", "session_id", c.st.ID, "frame", m.data)
		return
	}
	v, gap := c.st.Receive(f)
	switch v {
	case session.Deliver:
		if gap > 0 {
			c.log.Info("jsonrtc client: gap in the gateway's sequence", "session_id", c.st.ID, "gap", gap)
		}
		c.armAck()
		c.dispatch(f)
	case session.Duplicate:
		c.log.Debug("jsonrtc client: duplicate dropped", "session_id", c.st.ID, "sequence", f.Control.Sequence)
	case session.Unsequenced:
		if f.Control.Type == protocol.TypeError {
			// An error without a sequence still reports something.
			c.dispatch(f)
		}
	}
}

// onConnectResponse completes a connect: a new session, a resume, or a
// failed resume (a new session_id).
func (c *Client) onConnectResponse(f *protocol.Frame) {
	c.connectT.Stop()
	if f.Control.Type == protocol.TypeError {
		code := f.Header.ErrorCode
		// A challenge is answered on a resume too: a gateway restarted
		// registers the session again at its first resume (docs/protocol.md
		// §4.8), and sdk/js answers it there as well.
		if (code == protocol.CodeUnauthorized || code == protocol.CodeProxyAuthRequired) && len(f.Header.Authenticate) > 0 &&
			(c.phase == phaseConnecting || c.phase == phaseResuming) && c.o.Authorize != nil && c.authTries < 3 {
			c.authTries++
			ctx, cancel := context.WithTimeout(c.ctx, c.o.ConnectTimeout)
			auth, err := c.o.Authorize(ctx, f.Header.Authenticate)
			cancel()
			if err != nil {
				c.fail(fmt.Errorf("client: authorize: %w", err))
				return
			}
			if c.phase == phaseConnecting {
				c.st.ReceivedOutOfBand(f.Control.Sequence)
				c.sendConnect(auth)
			} else {
				c.sendResume(auth)
			}
			c.connectT.Reset(c.o.ConnectTimeout)
			return
		}
		fe := &FrameError{Code: code, Reason: f.Header.Reason}
		if e, ok := f.Header.ExtValue("retry_after"); ok {
			fe.RetryAfter = parseRetryAfter(e.Value)
		}
		c.lost(fe)
		return
	}
	sid := f.Control.SessionID
	if sid == "" || f.Control.Type != protocol.TypeResponse {
		c.lost(&FrameError{Code: protocol.CodeBadRequest, Reason: "connect response without session_id"})
		return
	}
	prev := c.st.ID
	var ev Event
	switch {
	case c.phase == phaseConnecting:
		c.st.ID = sid
		c.st.ReceivedOutOfBand(f.Control.Sequence)
		if f.Control.AckSequence != 0 {
			c.st.Ack(f.Control.AckSequence)
		}
		ev = Event{Kind: EventConnected, SessionID: sid, Identity: f.Header.Initiator}
	case sid == prev:
		c.st.ReceivedOutOfBand(f.Control.Sequence)
		if f.Control.AckSequence != 0 {
			c.st.Ack(f.Control.AckSequence)
		}
		if !f.Header.SSLR.IsNumber() {
			c.lost(&FrameError{Code: protocol.CodeBadRequest, Reason: "resume response without sslr"})
			return
		}
		resend, err := c.st.Resumed(f.Header.SSLR.V)
		if err != nil {
			// The gateway claims frames we never sent: the session
			// cannot be trusted to be exactly-once any more.
			c.fail(fmt.Errorf("client: %w", err))
			return
		}
		c.phase = phaseUp
		for _, data := range resend {
			c.writeUp(data)
		}
		ev = Event{Kind: EventResumed, SessionID: sid, Identity: f.Header.Initiator}
		c.log.Info("jsonrtc client: resumed", "session_id", sid, "sslr", f.Header.SSLR.V, "resent", len(resend))
	default:
		// A failed resume: the gateway started a new session. As wsc.js
		// does, our numbering restarts so that the next frame is 2.
		c.st = session.New(sid, 0)
		c.st.NextSeq = 2
		c.st.ReceivedOutOfBand(f.Control.Sequence)
		c.log.Info("jsonrtc client: resume refused, new session", "session_id", sid, "prev_session_id", prev)
		c.failAll(ErrSessionLost, lostCallReason)
		ev = Event{Kind: EventSessionLost, SessionID: sid, PrevSessionID: prev, Identity: f.Header.Initiator, Err: ErrSessionLost}
	}
	if c.cur == nil || c.stopErr != nil {
		return // the socket failed while resending, or the client ends
	}
	c.phase = phaseUp
	c.resumeT.Stop()
	c.attempt = 0
	if c.closing {
		c.fail(ErrClosed) // finish logs out, now that the session is up
	}
	c.mu.Lock()
	c.sid = sid
	if f.Header.Initiator != "" {
		c.ident = f.Header.Initiator
	}
	c.setICELocked(f)
	c.mu.Unlock()
	if !c.everConnected {
		c.everConnected = true
		c.log.Info("jsonrtc client: connected", "session_id", sid, "identity", f.Header.Initiator)
		c.ready <- nil
	}
	c.armPing()
	c.armAck()
	c.emit(ev)
}

// lostCallReason is why a call ended when its session could not be
// resumed: what the application may show its user.
const lostCallReason = "the gateway could not resume the session (it restarted, or the resume came too late): the call was lost"

// failAll ends every call, saying why (reason), and fails every pending
// request with err.
func (c *Client) failAll(err error, reason string) {
	for corr, ch := range c.pending {
		ch <- result{err: err}
		delete(c.pending, corr)
	}
	for id, k := range c.calls {
		delete(c.calls, id)
		k.stopAnswer()
		k.ended = true
		c.emit(Event{Kind: EventCall, Call: k, CallEvent: CallFailed, Err: err, Reason: reason})
	}
}

// dispatch hands a new inbound frame to its package.
func (c *Client) dispatch(f *protocol.Frame) {
	if f.Control.Type == protocol.TypeError && f.Header.ErrorCode == protocol.CodeServerError {
		// docs/protocol.md §9.1: 500 ends the whole session.
		c.emit(Event{Kind: EventError, Frame: f, Code: f.Header.ErrorCode, Reason: f.Header.Reason, Header: &f.Header})
		c.fail(&FrameError{Code: f.Header.ErrorCode, Reason: f.Header.Reason})
		return
	}
	if f.Control.Type == protocol.TypeResponse || f.Control.Type == protocol.TypeError {
		if ch, ok := c.pending[f.Control.CorrelationID]; ok && f.Control.CorrelationID != "" {
			delete(c.pending, f.Control.CorrelationID)
			ch <- frameResult(f)
			return
		}
	}
	if f.Control.Type == protocol.TypeRequest && !protocol.KnownAction(f.EffectivePackage(), f.Header.Action) {
		c.onDeclaredRequest(f) // declared.go
		return
	}
	switch f.EffectivePackage() {
	case protocol.PackageRegister:
		if f.Control.Type == protocol.TypeRequest && f.Header.Action == protocol.ActionAuthenticate {
			c.onAuthenticate(f)
			return
		}
	case protocol.PackageCall:
		if c.onCallFrame(f) {
			return
		}
	case protocol.PackageMessaging:
		if c.onMessagingFrame(f) {
			return
		}
	}
	if f.Control.Type == protocol.TypeError {
		c.emit(Event{Kind: EventError, Frame: f, Code: f.Header.ErrorCode, Reason: f.Header.Reason, Header: &f.Header})
		return
	}
	c.emit(Event{Kind: EventFrame, Frame: f, Header: &f.Header})
}

// onAuthenticate answers the gateway's live digest challenge (a
// registration refresh, docs/protocol.md §4.8) with Options.Authorize, as
// the connect's challenge is answered. Authorize runs off the loop, which
// keeps serving the session meanwhile; without it, or when it fails, the
// gateway gets error 401 and the registration is lost.
func (c *Client) onAuthenticate(f *protocol.Frame) {
	corr := f.Control.CorrelationID
	reply := func(auth json.RawMessage, err error) *protocol.Frame {
		out := &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageRegister,
				CorrelationID: corr, MessageState: protocol.StateFinal},
			Header: protocol.Header{Action: protocol.ActionAuthenticate, ResponseCode: protocol.CodeOK, Authorization: auth},
		}
		if err != nil {
			out.Control.Type, out.Control.MessageState = protocol.TypeError, ""
			out.Header.ResponseCode, out.Header.Authorization = 0, nil
			out.Header.ErrorCode, out.Header.Reason = protocol.CodeUnauthorized, err.Error()
		}
		return out
	}
	if c.o.Authorize == nil {
		c.send(reply(nil, errors.New("no credentials")))
		return
	}
	challenge := append(json.RawMessage(nil), f.Header.Authenticate...)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.o.ConnectTimeout)
		auth, err := c.o.Authorize(ctx, challenge)
		cancel()
		if err != nil {
			c.log.Info("jsonrtc client: live challenge not answered", "err", err)
		}
		_ = c.do(c.ctx, func() error { return c.send(reply(auth, err)) })
	}()
}

func frameResult(f *protocol.Frame) result {
	if f.Control.Type == protocol.TypeError {
		return result{code: f.Header.ErrorCode, err: &FrameError{Code: f.Header.ErrorCode, Reason: f.Header.Reason}, frame: f}
	}
	code := f.Header.ResponseCode
	if code == 0 {
		code = protocol.CodeOK
	}
	return result{code: code, expiry: f.Header.Expiry, frame: f}
}

// RequestTimeouts is how many requests got no answer within their
// bound (Options.RequestTimeout): failed with ErrRequestTimeout.
func (c *Client) RequestTimeouts() uint64 { return c.timeouts.Load() }

// timedOut counts a request that got no answer and says which.
func (c *Client) timedOut(pkg protocol.Package, action protocol.Action, after time.Duration) error {
	c.timeouts.Add(1)
	c.log.Info("jsonrtc client: no answer to a request", "package", pkg, "action", action, "after", after)
	return fmt.Errorf("%w: %s/%s, none within %s", ErrRequestTimeout, pkg, action, after)
}

// request sends f as a request awaiting its response and waits for it,
// at most the action's bound (Options.RequestTimeout).
func (c *Client) request(ctx context.Context, build func() *protocol.Frame) (int, error) {
	r, err := c.requestResult(ctx, build)
	return r.code, err
}

// requestResult is request, with the whole result.
func (c *Client) requestResult(ctx context.Context, build func() *protocol.Frame) (result, error) {
	var ch chan result
	var corr string
	var pkg protocol.Package
	var action protocol.Action
	err := c.do(ctx, func() error {
		if len(c.pending) >= c.o.MaxPending {
			return ErrTooManyPending
		}
		f := build()
		if f == nil {
			return ErrCallState
		}
		corr = c.nextCorr()
		f.Control.CorrelationID = corr
		pkg, action = f.EffectivePackage(), f.Header.Action
		if err := c.send(f); err != nil {
			return err
		}
		ch = make(chan result, 1)
		c.pending[corr] = ch
		return nil
	})
	if err != nil {
		return result{}, err
	}
	bound := c.o.requestTimeout(pkg, action)
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r, r.err
	case <-timer.C:
		// Forgotten on the loop, unless the answer won the race: then it
		// is in ch (as is the failure finish sends everything pending).
		forgot := false
		if c.do(context.Background(), func() error {
			if _, ok := c.pending[corr]; ok {
				delete(c.pending, corr)
				forgot = true
			}
			return nil
		}) == nil && forgot {
			return result{}, c.timedOut(pkg, action, bound)
		}
		if r, ok := <-ch; ok {
			return r, r.err
		}
		return result{}, ErrClosed
	case <-ctx.Done():
		// Forget the request if the loop has a moment; its answer, if it
		// comes, then goes to EventFrame/EventError.
		select {
		case c.cmds <- func() { delete(c.pending, corr) }:
		default:
		}
		return result{}, ctx.Err()
	}
}

// SendFrame stamps f with the session id, the next sequence and the
// ack, then sends it with the reliability of every other frame. It
// returns the sequence f took. For tests and extensions; f is modified.
func (c *Client) SendFrame(ctx context.Context, f *protocol.Frame) (uint64, error) {
	var seq uint64
	err := c.do(ctx, func() error {
		if err := c.send(f); err != nil {
			return err
		}
		seq = f.Control.Sequence
		return nil
	})
	return seq, err
}

// SendRaw writes data as one text frame as it is: not sequenced, not
// retained, lost if the socket is. For tests of the gateway's handling
// of malformed frames, whose error frames arrive as EventError.
func (c *Client) SendRaw(ctx context.Context, data []byte) error {
	cp := append([]byte(nil), data...)
	return c.do(ctx, func() error {
		if c.phase != phaseUp || c.cur == nil {
			return ErrNotConnected
		}
		c.writeUp(cp)
		return nil
	})
}
