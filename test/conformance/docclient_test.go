package conformance

// docClient is a JSONrtc client written from docs/protocol.md alone: its
// frame structs, numbering, acknowledgements, retained window and resume
// follow the sections cited next to each rule, and nothing in it comes
// from the project's own client, session or protocol packages. If a
// scenario needs more than the document says, the document has a gap.

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// frame is §2.1: control, header, payload.
type frame struct {
	Control control         `json:"control"`
	Header  header          `json:"header"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// control is §2.2. Pointers distinguish an absent number from 0.
type control struct {
	Type          string  `json:"type"`
	PackageType   string  `json:"package_type,omitempty"`
	SessionID     string  `json:"session_id,omitempty"`
	SubsessionID  string  `json:"subsession_id,omitempty"`
	Sequence      *uint64 `json:"sequence,omitempty"`
	MessageState  string  `json:"message_state,omitempty"`
	CorrelationID string  `json:"correlation_id,omitempty"`
	AckSequence   *uint64 `json:"ack_sequence,omitempty"`
	Version       string  `json:"version,omitempty"`
}

// header is §2.3; Ext holds the extension headers of §2.4.
type header struct {
	Action       string          `json:"action,omitempty"`
	Initiator    string          `json:"initiator,omitempty"`
	Target       string          `json:"target,omitempty"`
	ResponseCode int             `json:"response_code,omitempty"`
	ErrorCode    int             `json:"error_code,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	Cslr         *uint64         `json:"cslr,omitempty"`
	Cslw         json.RawMessage `json:"cslw,omitempty"` // a number or null (§4.4)
	Csuw         json.RawMessage `json:"csuw,omitempty"`
	Sslr         *uint64         `json:"sslr,omitempty"`
	Expiry       *int64          `json:"expiry,omitempty"`
	ReferTo      string          `json:"refer_to,omitempty"`
	Ext          map[string]any  `json:"-"`
}

type headerKnown header // without the methods, for the default codec

func (h header) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(headerKnown(h))
	if err != nil || len(h.Ext) == 0 {
		return b, err
	}
	ext, err := json.Marshal(h.Ext)
	if err != nil {
		return nil, err
	}
	if string(b) == "{}" {
		return ext, nil
	}
	return append(append(b[:len(b)-1], ','), ext[1:]...), nil
}

var knownHeaders = map[string]bool{
	"action": true, "initiator": true, "target": true, "response_code": true,
	"error_code": true, "reason": true, "cslr": true, "cslw": true, "csuw": true,
	"sslr": true, "expiry": true, "refer_to": true, "authenticate": true,
	"authorization": true,
}

func (h *header) UnmarshalJSON(b []byte) error {
	if string(b) == "null" { // §2.1: null means empty
		return nil
	}
	var k headerKnown
	if err := json.Unmarshal(b, &k); err != nil {
		return err
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	*h = header(k)
	for name, v := range all {
		if !knownHeaders[name] {
			if h.Ext == nil {
				h.Ext = map[string]any{}
			}
			h.Ext[name] = v
		}
	}
	return nil
}

func (f frame) seq() uint64 {
	if f.Control.Sequence == nil {
		return 0
	}
	return *f.Control.Sequence
}

func (f frame) String() string {
	b, _ := json.Marshal(f)
	return string(b)
}

func u64(v uint64) *uint64 { return &v }

// sdp and the payload helpers build §5 payloads.
func sdpPayload(dir string) json.RawMessage {
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=" + dir + "\r\n"
	b, _ := json.Marshal(map[string]string{"sdp": sdp})
	return b
}

func jsonPayload(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sent is one retained frame: its sequence and its encoding exactly as
// first sent (§3.3: resent byte for byte).
type sent struct {
	seq uint64
	raw []byte
}

// docClient holds one session across any number of sockets.
type docClient struct {
	t           testing.TB
	url         string
	subprotocol string
	ackDelay    time.Duration // 0: never send standalone acks
	resendEvery time.Duration // pause between resent frames; 0: none

	mu        sync.Mutex
	conn      *websocket.Conn
	online    bool // false between a dropped socket and the resume
	sessionID string
	identity  string
	nextSeq   uint64 // §3.1
	highest   uint64 // highest gateway sequence processed (§3.2)
	ahead     uint64 // a resume's connect response, not yet counted (§4.4)
	retained  []sent // §3.3, non-register frames only
	ackTimer  *time.Timer
	lastAcked uint64 // what our last frame or ack carried

	frames chan frame // every new numbered gateway frame, once, in order
	// connects holds the answers to connects: responses and the
	// unnumbered errors of §4.2. Apart from frames, so that a resume reads
	// its answer while the old socket's last frames wait their turn.
	connects chan frame
	acks     chan frame       // standalone acknowledgements received
	pongs    chan struct{}    // text pongs (§1.4)
	closed   chan closeReport // the socket's end as the reader saw it
	dups     int              // duplicates dropped (§3.4 rule applied by clients)
	wg       sync.WaitGroup
}

type closeReport struct {
	code websocket.StatusCode
	err  error
}

func newDocClient(t testing.TB, url, subprotocol string) *docClient {
	c := &docClient{
		t: t, url: url, subprotocol: subprotocol, ackDelay: 50 * time.Millisecond,
		frames: make(chan frame, 1024), acks: make(chan frame, 1024),
		connects: make(chan frame, 16),
		pongs:    make(chan struct{}, 64),
	}
	t.Cleanup(func() {
		c.mu.Lock()
		conn := c.conn
		if c.ackTimer != nil {
			c.ackTimer.Stop()
		}
		c.mu.Unlock()
		if conn != nil {
			conn.CloseNow()
		}
		c.wg.Wait()
	})
	return c
}

// dial opens a socket offering the subprotocol and checks the echo (§1.2,
// §14 step 1). It does not send anything.
func (c *docClient) dial(ctx context.Context) error {
	conn, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{Subprotocols: []string{c.subprotocol}})
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial: HTTP %d: %w", resp.StatusCode, err)
		}
		return err
	}
	if got := conn.Subprotocol(); got != c.subprotocol {
		conn.CloseNow()
		return fmt.Errorf("gateway chose subprotocol %q, offered %q", got, c.subprotocol)
	}
	conn.SetReadLimit(1 << 20)
	closed := make(chan closeReport, 1)
	c.mu.Lock()
	c.conn = conn
	c.closed = closed
	c.mu.Unlock()
	c.wg.Add(1)
	go c.read(conn, closed)
	return nil
}

// read is the socket's reader: it applies §3.2 and §3.4 to each frame.
func (c *docClient) read(conn *websocket.Conn, closed chan closeReport) {
	defer c.wg.Done()
	for {
		typ, data, err := conn.Read(context.Background())
		if err != nil {
			closed <- closeReport{code: websocket.CloseStatus(err), err: err}
			return
		}
		if typ != websocket.MessageText {
			c.t.Errorf("gateway sent a binary message (§1.3)")
			continue
		}
		if string(data) == "pong" {
			c.pongs <- struct{}{}
			continue
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.t.Errorf("gateway frame does not decode: %v: %s", err, data)
			continue
		}
		c.receive(f)
	}
}

func (c *docClient) receive(f frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.Control.AckSequence != nil {
		c.applyAck(*f.Control.AckSequence)
	}
	if f.Control.Type == "acknowledgement" { // §3.2: never numbered
		c.acks <- f
		return
	}
	if f.Control.Sequence == nil {
		// Connect errors precede the session (§4.2); deliver them as is.
		c.connects <- f
		return
	}
	s := *f.Control.Sequence
	if f.Control.PackageType == "register" && f.Header.Action == "connect" {
		// A connect response that opens a session (§4.1, or §4.5 after a
		// failed resume) is its gateway sequence 1, processed. A resume's
		// response (same session id) is numbered above the resent frames
		// that follow it (§4.4): it counts as processed only once every
		// sequence below it is, or a later frame arrives.
		switch {
		case f.Control.Type != "response":
		case f.Control.SessionID != c.sessionID:
			c.highest, c.ahead = s, 0
		case s == c.highest+1:
			c.highest = s
		case s > c.highest:
			c.ahead = s
		}
		if f.Control.Type == "response" {
			c.connects <- f
		} else {
			c.frames <- f // "already connected" (§4.4), numbered
		}
		return
	}
	if s <= c.highest { // §3.4 step 6 as clients apply it
		c.dups++
		c.armAck()
		return
	}
	c.highest = s // §3.4 step 7: a gap is accepted
	if c.ahead != 0 && c.ahead <= c.highest+1 {
		c.highest = max(c.highest, c.ahead)
		c.ahead = 0
	}
	c.frames <- f
	c.armAck()
}

// applyAck drops retained frames up to ack (§3.2, §3.3).
func (c *docClient) applyAck(ack uint64) {
	i := 0
	for i < len(c.retained) && c.retained[i].seq <= ack {
		i++
	}
	c.retained = c.retained[i:]
}

// armAck schedules a standalone acknowledgement (§3.2) unless a frame we
// send first carries the ack.
func (c *docClient) armAck() {
	if c.ackDelay == 0 || c.ackTimer != nil {
		return
	}
	c.ackTimer = time.AfterFunc(c.ackDelay, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ackTimer = nil
		if !c.online || c.highest == c.lastAcked {
			return
		}
		c.lastAcked = c.highest
		f := frame{Control: control{Type: "acknowledgement", PackageType: "register", SessionID: c.sessionID, AckSequence: u64(c.highest), Version: "1.0"}}
		b, _ := json.Marshal(f)
		c.conn.Write(context.Background(), websocket.MessageText, b)
	})
}

// connect runs §4.1 on a fresh socket and returns the response (or the
// connect error of §4.2).
func (c *docClient) connect(ctx context.Context, identity string) (frame, error) {
	if err := c.dial(ctx); err != nil {
		return frame{}, err
	}
	h := header{Action: "connect", Initiator: identity, Target: identity}
	f := frame{Control: control{Type: "request", PackageType: "register", Sequence: u64(1), Version: "1.0"}, Header: h, Payload: json.RawMessage("{}")}
	if err := c.writeFrame(ctx, f); err != nil {
		return frame{}, err
	}
	r, err := c.nextConnect(ctx)
	if err != nil {
		return frame{}, err
	}
	if r.Control.Type == "response" {
		c.mu.Lock()
		c.sessionID = r.Control.SessionID
		c.identity = r.Header.Initiator // §4.1: adopt the gateway's identity
		c.nextSeq = 2
		c.online = true
		c.mu.Unlock()
	}
	return r, nil
}

// mustConnect connects as identity and fails the test on anything but a 200.
func mustConnect(t testing.TB, url, identity string) *docClient {
	t.Helper()
	c := newDocClient(t, url, "jsonrtc")
	r, err := c.connect(ctxT(t), identity)
	if err != nil {
		t.Fatalf("connect %s: %v", identity, err)
	}
	if r.Control.Type != "response" || r.Header.ResponseCode != 200 {
		t.Fatalf("connect %s: %v", identity, r)
	}
	return c
}

// resumeHeaders are §4.4's cslr, cslw and csuw.
func (c *docClient) resumeHeaders() header {
	h := header{Action: "connect", Cslr: u64(c.highest), Initiator: c.identity, Target: c.identity}
	switch {
	case len(c.retained) > 0:
		h.Cslw = jsonPayload(c.retained[0].seq)
		h.Csuw = jsonPayload(c.retained[len(c.retained)-1].seq)
	case c.nextSeq > 1:
		h.Cslw = jsonPayload(c.nextSeq)
		h.Csuw = jsonPayload(c.nextSeq - 1)
	default:
		h.Cslw, h.Csuw = json.RawMessage("null"), json.RawMessage("null")
	}
	return h
}

// drop loses the socket without a close handshake (§4.6): the gateway
// sees a dead TCP connection, as after a network loss.
func (c *docClient) drop() closeReport {
	c.mu.Lock()
	c.online = false
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	conn.CloseNow()
	return <-closed
}

// resume reconnects with the reconnect connect of §4.4 and reports
// whether the session survived. On success it resends what the gateway
// did not process (frames above sslr); on failure it starts over as §4.5
// says.
func (c *docClient) resume(ctx context.Context, h *header) (frame, bool, error) {
	if err := c.dial(ctx); err != nil {
		return frame{}, false, err
	}
	c.mu.Lock()
	if h == nil {
		rh := c.resumeHeaders()
		h = &rh
	}
	old := c.sessionID
	c.mu.Unlock()
	f := frame{Control: control{Type: "request", PackageType: "register", SessionID: old, Version: "1.0"}, Header: *h, Payload: json.RawMessage("{}")}
	if err := c.writeFrame(ctx, f); err != nil {
		return frame{}, false, err
	}
	r, err := c.nextConnect(ctx)
	if err != nil {
		return frame{}, false, err
	}
	if r.Control.Type != "response" {
		return r, false, fmt.Errorf("reconnect connect answered %v", r)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.identity = r.Header.Initiator
	c.online = true
	if r.Control.SessionID != old {
		// §4.5: a new session. Its connect response is gateway sequence 1,
		// the reconnect connect stood for our sequence 1: we go on with 2.
		c.sessionID = r.Control.SessionID
		c.retained = nil
		c.nextSeq = 2
		return r, false, nil
	}
	// §4.4: the gateway processed our frames up to sslr; the rest go again,
	// unchanged, in order.
	if r.Header.Sslr == nil {
		return r, true, fmt.Errorf("resume response without sslr: %v", r)
	}
	c.applyAck(*r.Header.Sslr)
	resend := append([]sent(nil), c.retained...)
	conn, every := c.conn, c.resendEvery
	c.mu.Unlock()
	defer c.mu.Lock()
	for i, s := range resend {
		if i > 0 && every > 0 {
			// After a 1013 "rate limited" the resend goes more slowly
			// (§9.3), within the documented rate.
			time.Sleep(every)
		}
		if err := conn.Write(ctx, websocket.MessageText, s.raw); err != nil {
			return r, true, nil // lost again: the next resume resends
		}
	}
	return r, true, nil
}

// send numbers, stamps and retains f, then writes it if a socket is up
// (§3.1-§3.3). Offline it is only retained, to be resent on resume.
func (c *docClient) send(ctx context.Context, f frame) uint64 {
	c.t.Helper()
	c.mu.Lock()
	s := c.nextSeq
	c.nextSeq++
	f.Control.Sequence = u64(s)
	f.Control.SessionID = c.sessionID
	f.Control.Version = "1.0"
	if c.highest > 0 {
		f.Control.AckSequence = u64(c.highest)
		c.lastAcked = c.highest
	}
	if f.Payload == nil {
		f.Payload = json.RawMessage("{}")
	}
	b, err := json.Marshal(f)
	if err != nil {
		c.mu.Unlock()
		c.t.Fatalf("marshal: %v", err)
	}
	c.retained = append(c.retained, sent{seq: s, raw: b})
	conn, online := c.conn, c.online
	c.mu.Unlock()
	if online {
		// A socket that just closed loses nothing: the frame is retained
		// and goes again on the resume (§3.3, §4.4).
		conn.Write(ctx, websocket.MessageText, b)
	}
	return s
}

// claim takes the next sequence for a frame the test writes by hand (bad
// input): the gateway counts it as processed (§2.7, §3.4 step 7), so it is
// not retained.
func (c *docClient) claim() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.nextSeq
	c.nextSeq++
	return s
}

// skip moves the numbering on by n, leaving a gap (§3.4 step 7).
func (c *docClient) skip(n uint64) {
	c.mu.Lock()
	c.nextSeq += n
	c.mu.Unlock()
}

// writeFrame writes an unnumbered frame as is (connects, §3.1).
func (c *docClient) writeFrame(ctx context.Context, f frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return c.writeRaw(ctx, b)
}

// writeRaw writes a text message outside the reliability layer: bad input,
// pings, deliberate duplicates.
func (c *docClient) writeRaw(ctx context.Context, b []byte) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	return conn.Write(ctx, websocket.MessageText, b)
}

// nextFrame returns the next gateway frame (not acks, not connect answers).
func (c *docClient) nextFrame(ctx context.Context) (frame, error) { return recv(ctx, c.frames) }

// nextConnect returns the next answer to a connect.
func (c *docClient) nextConnect(ctx context.Context) (frame, error) { return recv(ctx, c.connects) }

func recv(ctx context.Context, ch chan frame) (frame, error) {
	select {
	case f := <-ch:
		return f, nil
	case <-ctx.Done():
		return frame{}, ctx.Err()
	}
}

// expect reads the next frame and fails the test unless it has the type
// and action given.
func (c *docClient) expect(t testing.TB, typ, pkg, action string) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.nextFrame(ctx)
	if err != nil {
		t.Fatalf("waiting for %s/%s (%s): %v", typ, action, pkg, err)
	}
	if f.Control.Type != typ || f.Control.PackageType != pkg || f.Header.Action != action {
		t.Fatalf("want %s/%s in %s, got %v", typ, action, pkg, f)
	}
	return f
}

// expectAck waits for a standalone acknowledgement covering seq.
func (c *docClient) expectAck(t testing.TB, seq uint64) frame {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f := <-c.acks:
			if f.Control.AckSequence != nil && *f.Control.AckSequence >= seq {
				return f
			}
		case <-timeout:
			t.Fatalf("no standalone acknowledgement of %d", seq)
		}
	}
}

// ping sends the text ping of §1.4 and waits for the pong.
func (c *docClient) ping(t testing.TB) {
	t.Helper()
	if err := c.writeRaw(ctxT(t), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.pongs:
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

// waitClosed waits for the gateway to close the socket.
func (c *docClient) waitClosed(t testing.TB) closeReport {
	t.Helper()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	select {
	case r := <-closed:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway did not close the socket")
	}
	return closeReport{}
}

// barrier proves that the gateway processed everything this client sent
// before it and wrote everything it had for this client: frames are
// processed in order (§3.5), and a request on a subsession with no call is
// answered 481 (§5.8). It fails on any other frame first. A text ping
// would not do: the transport answers it without the session (§1.4).
func (c *docClient) barrier(t testing.TB) {
	t.Helper()
	s := c.send(ctxT(t), request("call", "no-such-call", "prack", header{}, nil))
	f := c.expect(t, "error", "call", "prack")
	wantEq(t, "barrier error_code", f.Header.ErrorCode, 481)
	wantEq(t, "barrier correlation", f.Control.CorrelationID, fmt.Sprintf("c%d", s))
}

func (c *docClient) retainedSeqs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s []uint64
	for _, r := range c.retained {
		s = append(s, r.seq)
	}
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Small builders for the frames of §5-§8.

func request(pkg, sub, action string, h header, payload json.RawMessage) frame {
	h.Action = action
	return frame{Control: control{Type: "request", PackageType: pkg, SubsessionID: sub}, Header: h, Payload: payload}
}

func message(pkg, sub, action, corr string, h header, payload json.RawMessage) frame {
	h.Action = action
	return frame{Control: control{Type: "message", PackageType: pkg, SubsessionID: sub, CorrelationID: corr}, Header: h, Payload: payload}
}

// answer builds the response to a frame received from the gateway, on
// the same subsession and correlation (§2.5).
func answer(to frame, state string, code int, payload json.RawMessage) frame {
	return frame{
		Control: control{Type: "response", PackageType: to.Control.PackageType, SubsessionID: to.Control.SubsessionID, CorrelationID: to.Control.CorrelationID, MessageState: state},
		Header:  header{Action: to.Header.Action, ResponseCode: code},
		Payload: payload,
	}
}

func errorTo(to frame, code int) frame {
	return frame{
		Control: control{Type: "error", PackageType: to.Control.PackageType, SubsessionID: to.Control.SubsessionID, CorrelationID: to.Control.CorrelationID},
		Header:  header{Action: to.Header.Action, ErrorCode: code},
	}
}

// Assertions.

func wantEq[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantPayload(t testing.TB, what string, got, want json.RawMessage) {
	t.Helper()
	if !payloadEq(got, want) {
		t.Errorf("%s payload = %s, want %s", what, got, want)
	}
}

// payloadEq compares decoded payloads: keys in any order.
func payloadEq(a, b json.RawMessage) bool {
	var x, y any
	json.Unmarshal(a, &x)
	json.Unmarshal(b, &y)
	return reflect.DeepEqual(x, y)
}

// selfCorrelation reports whether id is a gateway correlation s<n> (§2.5).
func selfCorrelation(id string) bool {
	if !strings.HasPrefix(id, "s") || len(id) < 2 {
		return false
	}
	for _, r := range id[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
