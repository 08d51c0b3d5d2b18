package call

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// Fakes of the web sessions and of the SIP legs, for the unit tests of
// sip.go. Each records what the handler did to it in order, on a
// channel the test waits on.

const waitFor = 5 * time.Second

// fakeEP is a web session. While down (socket lost, resume pending) its
// frames are retained, as the session layer retains them, and delivered
// by resume.
type fakeEP struct {
	id, identity string
	oracle       bool
	calls        atomic.Int32 // call quota in use

	mu     sync.Mutex
	seq    uint64
	down   bool
	asleep bool // in standby (sleeper)
	broken bool // Send fails: the session's window overflowed
	held   []*protocol.Frame
	frames chan *protocol.Frame
	// taken, when set, makes the session an endpoint.Relayer: the relays
	// it took, by origin, with the sequences they got.
	taken map[endpoint.Origin]uint64
}

// takeOnce makes e take each relay once, as a gateway session does.
func (e *fakeEP) takeOnce() {
	e.mu.Lock()
	e.taken = map[endpoint.Origin]uint64{}
	e.mu.Unlock()
}

// Relay implements endpoint.Relayer.
func (e *fakeEP) Relay(f *protocol.Frame, self bool, o endpoint.Origin) (uint64, error) {
	e.mu.Lock()
	seq, ok := e.taken[o]
	on := e.taken != nil
	e.mu.Unlock()
	if ok {
		return seq, nil
	}
	seq, err := e.Send(f, self)
	if on && err == nil {
		e.mu.Lock()
		e.taken[o] = seq
		e.mu.Unlock()
	}
	return seq, err
}

// none checks that nothing was sent to the session (relays are sent
// before HandleFrame returns).
func (e *fakeEP) none(t *testing.T) {
	t.Helper()
	select {
	case f := <-e.frames:
		t.Fatalf("%s: unexpected frame %s", e.id, f.Marshal())
	default:
	}
}

func newEP(id, identity string) *fakeEP {
	return &fakeEP{id: id, identity: identity, frames: make(chan *protocol.Frame, 256)}
}

func (e *fakeEP) ID() string       { return e.id }
func (e *fakeEP) Identity() string { return e.identity }
func (e *fakeEP) Oracle() bool     { return e.oracle }
func (e *fakeEP) AcquireCall() bool {
	e.calls.Add(1)
	return true
}
func (e *fakeEP) ReleaseCall() { e.calls.Add(-1) }

func (e *fakeEP) Send(f *protocol.Frame, self bool) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.broken {
		return 0, errors.New("window full")
	}
	e.seq++
	cp := *f
	cp.Control.Sequence = e.seq
	if self {
		cp.Control.CorrelationID = "s" + strconv.FormatUint(e.seq, 10)
	}
	if e.down {
		e.held = append(e.held, &cp)
	} else {
		e.frames <- &cp
	}
	return e.seq, nil
}

// Asleep implements sleeper: the session is in standby.
func (e *fakeEP) Asleep() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.asleep
}

func (e *fakeEP) setAsleep(on bool) {
	e.mu.Lock()
	e.asleep = on
	e.mu.Unlock()
}

func (e *fakeEP) setDown() {
	e.mu.Lock()
	e.down = true
	e.mu.Unlock()
}

func (e *fakeEP) resume() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = false
	for _, f := range e.held {
		e.frames <- f
	}
	e.held = nil
}

// next returns the next frame sent to the session.
func (e *fakeEP) next(t *testing.T) *protocol.Frame {
	t.Helper()
	select {
	case f := <-e.frames:
		return f
	case <-time.After(waitFor):
		t.Fatalf("%s: no frame", e.id)
		return nil
	}
}

// expect returns the next frame, which must be of type typ and action act.
func (e *fakeEP) expect(t *testing.T, typ protocol.Type, act protocol.Action) *protocol.Frame {
	t.Helper()
	f := e.next(t)
	if f.Control.Type != typ || f.Header.Action != act {
		t.Fatalf("%s: frame %s/%s (code %d %d), want %s/%s", e.id, f.Control.Type, f.Header.Action,
			f.Header.ResponseCode, f.Header.ErrorCode, typ, act)
	}
	return f
}

// quiet checks that nothing was sent to the session, once every goroutine
// of the test is blocked (synctest.Wait): a frame the handler is still
// about to send counts too. Tests that call it run in a bubble (inBubble).
func (e *fakeEP) quiet(t *testing.T) {
	t.Helper()
	if f := e.pending(); f != nil {
		t.Fatalf("%s: unexpected frame %s/%s (code %d %d)", e.id, f.Control.Type, f.Header.Action, f.Header.ResponseCode, f.Header.ErrorCode)
	}
}

// pending returns a frame sent to the session and not yet read, or nil,
// once the bubble's goroutines are all blocked.
func (e *fakeEP) pending() *protocol.Frame {
	synctest.Wait()
	select {
	case f := <-e.frames:
		return f
	default:
		return nil
	}
}

// A frame the handler sends after the call that caused it returned (the
// 180 goes out from the SIP leg's goroutine) is seen: a look without
// waiting for the handler to settle missed it.
func TestQuietSeesLateFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for range 20 {
			e := newEnv(t, time.Minute)
			a, fc := e.outgoing(t)
			fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 180})
			if f := a.pending(); f == nil || f.Header.ResponseCode != 180 {
				t.Fatalf("the 180 was missed: %v", f)
			}
			fc.end(sipgw.Event{End: sipgw.EndRejected, Code: 486})
			a.expect(t, protocol.TypeError, protocol.ActionStart)
		}
	})
}

// inBubble runs a (sub)test in a synctest bubble: the handler's timers
// (ring timeout) run on the bubble's clock and quiet can wait for the
// handler to settle.
func inBubble(f func(*testing.T)) func(*testing.T) {
	return func(t *testing.T) { synctest.Test(t, f) }
}

type fakeDir struct {
	mu   sync.Mutex
	m    map[string][]Endpoint
	fail map[string]error // identities whose lookup fails (a cluster's store that did not answer)
}

func (d *fakeDir) Find(identity string) ([]Endpoint, error) {
	d.mu.Lock()
	err := d.fail[identity]
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return d.Sessions(identity), nil
}

func (d *fakeDir) Sessions(identity string) []Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Endpoint(nil), d.m[identity]...)
}

func (d *fakeDir) Known(identity string) bool { return len(d.Sessions(identity)) > 0 }

// op is one thing the handler did to a SIP leg.
type op struct {
	name     string // hangup, reject, progress, answer, ack, prack, reoffer, dtmf, info, transfer, ro-accept, ro-reject
	code     int
	sdp      string // or a hang-up's reason
	reliable bool
	info     sipgw.Info
	trickle  bool           // SetTrickle's last value when the op ran
	ext      []sipgw.Header // hangup, reoffer, transfer, refer-*, notify: the frame's extension headers
}

type reofferResult struct {
	answer  []byte
	headers []sipgw.Header // Reoffer's: the to_web rules' of the 200
	err     error
}

// fakeCall is a SIP leg. Ending it (Hangup, Reject or end) sends
// EventEnded and closes Events and Done, as sipgw does.
type fakeCall struct {
	headers              []sipgw.Header // the INVITE's, for Headers
	id, identity, remote string
	offer                []byte
	dial                 sipgw.DialOptions
	replaces             *sipgw.Replaces // the INVITE's Replaces header, for Replaces

	events   chan sipgw.Event
	done     chan struct{}
	ops      chan op
	reoffers chan reofferResult // what Reoffer returns, given by the test
	referHdr []sipgw.Header     // what Transfer returns with its 202
	dtmfErr  error              // what SendDTMF returns
	referGo  chan struct{}      // non-nil: Transfer waits for it before its 202

	mu       sync.Mutex
	peerPkgs map[string]bool
	trickle  bool
	ended    bool
	ros      []*fakeReoffer // answerers of pushed EventReoffers, in order
	refers   []*fakeRefer   // answerers of pushed EventRefers, in order
	infos    []*fakeInfo    // answerers of pushed declared INFOs, in order
}

var callSeq atomic.Int64

func newFakeCall(identity, remote string) *fakeCall {
	return &fakeCall{
		id: "fake-" + strconv.FormatInt(callSeq.Add(1), 10), identity: identity, remote: remote,
		events: make(chan sipgw.Event, 32), done: make(chan struct{}), ops: make(chan op, 64),
		reoffers: make(chan reofferResult, 1), peerPkgs: map[string]bool{},
	}
}

func (c *fakeCall) record(o op) {
	c.mu.Lock()
	o.trickle = c.trickle
	c.mu.Unlock()
	c.ops <- o
}

// end sends the last event, once.
func (c *fakeCall) end(ev sipgw.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	ev.Kind = sipgw.EventEnded
	c.events <- ev
	close(c.events)
	close(c.done)
}

// push sends an event; after the end, as sipgw, none.
func (c *fakeCall) push(ev sipgw.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		c.events <- ev
	}
}

// pushReoffer sends a re-INVITE from the SIP side.
func (c *fakeCall) pushReoffer(sdp string) *fakeReoffer {
	ro := &fakeReoffer{c: c}
	c.mu.Lock()
	c.ros = append(c.ros, ro)
	c.mu.Unlock()
	c.push(sipgw.Event{Kind: sipgw.EventReoffer, SDP: []byte(sdp)})
	return ro
}

// pushRefer sends a REFER from the SIP side.
func (c *fakeCall) pushRefer(referTo string) *fakeRefer { return c.pushReferReplacing(referTo, nil) }

// pushReferReplacing sends a REFER whose Refer-To carries Replaces.
func (c *fakeCall) pushReferReplacing(referTo string, rep *sipgw.Replaces) *fakeRefer {
	r := &fakeRefer{c: c}
	c.mu.Lock()
	c.refers = append(c.refers, r)
	c.mu.Unlock()
	c.push(sipgw.Event{Kind: sipgw.EventRefer, ReferTo: referTo, ReferReplaces: rep})
	return r
}

func (c *fakeCall) refer(ev sipgw.Event) referAnswer {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.refers[0]
	c.refers = c.refers[1:]
	return r
}

// fakeRefer records the answer to a REFER (refer-accept, refer-reject
// with code) and its NOTIFYs (notify with code).
type fakeRefer struct {
	c    *fakeCall
	once sync.Once
}

func (r *fakeRefer) Accept(ext ...sipgw.Header) error {
	err := sipgw.ErrCallState
	r.once.Do(func() { err = nil; r.c.record(op{name: "refer-accept", ext: ext}) })
	return err
}

func (r *fakeRefer) Reject(code int, reason string, ext ...sipgw.Header) error {
	err := sipgw.ErrCallState
	r.once.Do(func() { err = nil; r.c.record(op{name: "refer-reject", code: code, ext: ext}) })
	return err
}

func (r *fakeRefer) Notify(ctx context.Context, code int, reason string, ext ...sipgw.Header) error {
	r.c.record(op{name: "notify", code: code, sdp: reason, ext: ext})
	return nil
}

func (c *fakeCall) Keys() sipgw.DialogKeys {
	k := sipgw.DialogKeys{CallID: c.dial.CallID, LocalTag: c.dial.FromTag}
	if k.CallID == "" {
		k.CallID = "cid-" + c.id
	}
	if k.LocalTag == "" {
		k.LocalTag = "our-tag"
	}
	if c.dial.Identity == "" {
		k = sipgw.DialogKeys{CallID: "cid-" + c.id, LocalTag: "our-tag", RemoteTag: "their-tag", ViaBranch: "z9hG4bK-" + c.id}
	}
	return k
}

func (c *fakeCall) ID() string                 { return c.id }
func (c *fakeCall) Identity() string           { return c.identity }
func (c *fakeCall) Remote() string             { return c.remote }
func (c *fakeCall) Offer() []byte              { return c.offer }
func (c *fakeCall) Headers() []sipgw.Header    { return c.headers }
func (c *fakeCall) Events() <-chan sipgw.Event { return c.events }
func (c *fakeCall) Done() <-chan struct{}      { return c.done }

func (c *fakeCall) Hangup(ctx context.Context, ext ...sipgw.Header) error {
	c.record(op{name: "hangup", ext: ext})
	c.end(sipgw.Event{End: sipgw.EndLocalBye, Code: 200})
	return nil
}

func (c *fakeCall) HangupWith(ctx context.Context, code int, reason string) error {
	c.record(op{name: "hangup", code: code, sdp: reason})
	c.end(sipgw.Event{End: sipgw.EndLocalBye, Code: 200})
	return nil
}

func (c *fakeCall) Reject(ctx context.Context, code int, reason string) error {
	c.record(op{name: "reject", code: code})
	c.end(sipgw.Event{End: sipgw.EndRejected, Code: code})
	return nil
}

func (c *fakeCall) Progress(ctx context.Context, code int, sdp []byte, reliable bool) error {
	c.record(op{name: "progress", code: code, sdp: string(sdp), reliable: reliable})
	return nil
}

func (c *fakeCall) Answer(ctx context.Context, sdp []byte, headers ...sipgw.Header) error {
	c.record(op{name: "answer", sdp: string(sdp)})
	return nil
}

func (c *fakeCall) Ack(ctx context.Context, sdp []byte) error {
	c.record(op{name: "ack"})
	return nil
}

func (c *fakeCall) Prack(ctx context.Context, sdp []byte) ([]byte, error) {
	c.record(op{name: "prack", sdp: string(sdp)})
	if len(sdp) == 0 {
		return nil, nil
	}
	// An offer: the test gives the PRACK's 200.
	select {
	case r := <-c.reoffers:
		return r.answer, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *fakeCall) Reoffer(ctx context.Context, sdp []byte, ext ...sipgw.Header) ([]byte, []sipgw.Header, error) {
	return c.offer1(ctx, "reoffer", sdp, ext)
}

// UpdateEarly is recorded as "update"; the test gives its result as
// Reoffer's.
func (c *fakeCall) UpdateEarly(ctx context.Context, sdp []byte, ext ...sipgw.Header) ([]byte, []sipgw.Header, error) {
	return c.offer1(ctx, "update", sdp, ext)
}

func (c *fakeCall) offer1(ctx context.Context, name string, sdp []byte, ext []sipgw.Header) ([]byte, []sipgw.Header, error) {
	c.record(op{name: name, sdp: string(sdp), ext: ext})
	select {
	case r := <-c.reoffers:
		return r.answer, r.headers, r.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (c *fakeCall) SendDTMF(ctx context.Context, digit string, d time.Duration, ext ...sipgw.Header) error {
	c.record(op{name: "dtmf", sdp: digit, ext: ext})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dtmfErr
}

func (c *fakeCall) SendInfo(ctx context.Context, in sipgw.Info) error {
	c.record(op{name: "info", info: in})
	return nil
}

func (c *fakeCall) Transfer(ctx context.Context, target string, ext ...sipgw.Header) ([]sipgw.Header, error) {
	c.record(op{name: "transfer", sdp: target, ext: ext})
	if c.referGo != nil {
		<-c.referGo
	}
	return c.referHdr, nil
}

func (c *fakeCall) TransferReplacing(ctx context.Context, target string, r sipgw.Replaces, _ ...sipgw.Header) ([]sipgw.Header, error) {
	c.record(op{name: "transfer", sdp: target + "?Replaces=" + r.String()})
	return c.referHdr, nil
}

func (c *fakeCall) Replaces() (sipgw.Replaces, bool) {
	if c.replaces == nil {
		return sipgw.Replaces{}, false
	}
	return *c.replaces, true
}

func (c *fakeCall) PeerAccepts(pkg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerPkgs[pkg]
}

func (c *fakeCall) SetTrickle(on bool) {
	c.mu.Lock()
	c.trickle = on
	c.mu.Unlock()
}

func (c *fakeCall) setPeerTrickle() {
	c.mu.Lock()
	c.peerPkgs[sipgw.InfoPackageTrickleICE] = true
	c.mu.Unlock()
}

func (c *fakeCall) reoffer(ev sipgw.Event) reofferAnswer {
	c.mu.Lock()
	defer c.mu.Unlock()
	ro := c.ros[0]
	c.ros = c.ros[1:]
	return ro
}

// nextOp returns the next thing done to the leg.
func (c *fakeCall) nextOp(t *testing.T) op {
	t.Helper()
	select {
	case o := <-c.ops:
		return o
	case <-time.After(waitFor):
		t.Fatalf("%s: no SIP operation", c.id)
		return op{}
	}
}

func (c *fakeCall) expectOp(t *testing.T, name string) op {
	t.Helper()
	o := c.nextOp(t)
	if o.name != name {
		t.Fatalf("%s: SIP operation %s (code %d), want %s", c.id, o.name, o.code, name)
	}
	return o
}

type fakeReoffer struct {
	c    *fakeCall
	once sync.Once
}

func (r *fakeReoffer) Accept(sdp []byte) error {
	err := sipgw.ErrCallState
	r.once.Do(func() { err = nil; r.c.record(op{name: "ro-accept", sdp: string(sdp)}) })
	return err
}

func (r *fakeReoffer) Reject(code int, reason string) error {
	err := sipgw.ErrCallState
	r.once.Do(func() { err = nil; r.c.record(op{name: "ro-reject", code: code}) })
	return err
}

// env is a Handler with the fake SIP network.
type env struct {
	h       *Handler
	dir     *fakeDir
	dials   chan *fakeCall
	dialErr atomic.Pointer[error]
	eps     []*fakeEP
}

func newEnv(t *testing.T, ring time.Duration) *env {
	t.Helper()
	e := &env{dir: &fakeDir{m: map[string][]Endpoint{}}, dials: make(chan *fakeCall, 8)}
	e.h = NewHandler(e.dir, &Options{RingTimeout: ring})
	e.h.useSIP(func(ctx context.Context, o sipgw.DialOptions) (sipCall, error) {
		if p := e.dialErr.Load(); p != nil {
			return nil, *p
		}
		fc := newFakeCall(o.Identity, "sip:"+o.Target)
		fc.dial = o
		e.dials <- fc
		return fc, nil
	}, SIPOptions{Domains: []string{"sip.example"}})
	t.Cleanup(func() { e.assertIdle(t) })
	return e
}

// ep adds a web session of identity.
func (e *env) ep(identity string) *fakeEP {
	ep := newEP(fmt.Sprintf("S%d", len(e.eps)+1), identity)
	e.eps = append(e.eps, ep)
	e.dir.mu.Lock()
	e.dir.m[identity] = append(e.dir.m[identity], ep)
	e.dir.mu.Unlock()
	return ep
}

// assertIdle: no call, no subsession, no call quota, no goroutine left.
func (e *env) assertIdle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := e.h.WaitIdle(ctx); err != nil {
		t.Errorf("calls left: %d", e.h.Active())
		return
	}
	e.h.mu.Lock()
	legs := len(e.h.legs)
	e.h.mu.Unlock()
	if legs != 0 {
		t.Errorf("%d subsessions left", legs)
	}
	for _, ep := range e.eps {
		if n := ep.calls.Load(); n != 0 {
			t.Errorf("%s: %d call quota still held", ep.id, n)
		}
	}
	done := make(chan struct{})
	go func() { e.h.WaitSIP(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Error("SIP leg goroutines still running")
	}
}

// dialled waits for the INVITE the handler sent.
func (e *env) dialled(t *testing.T) *fakeCall {
	t.Helper()
	select {
	case fc := <-e.dials:
		return fc
	case <-time.After(waitFor):
		t.Fatal("no INVITE")
		return nil
	}
}

// Web frames.

const (
	webOffer  = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-ufrag:U1\r\na=ice-pwd:P1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
	sipOffer  = "v=0\r\no=- 2 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"
	sipAnswer = "v=0\r\no=- 3 3 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\na=sendrecv\r\n"
	cand1     = "a=candidate:1 1 udp 2122260223 192.0.2.10 50000 typ host"
	cand2     = "a=candidate:2 1 udp 1686052607 198.51.100.7 50001 typ srflx raddr 192.0.2.10 rport 50000"
)

type wf struct {
	typ   protocol.Type
	act   protocol.Action
	sub   string
	seq   uint64
	corr  string
	state protocol.MessageState
	code  int // response_code, or error_code for errors
	p     protocol.CallPayload
}

func (w wf) frame() *protocol.Frame {
	f := &protocol.Frame{
		Control: protocol.Control{Type: w.typ, Package: protocol.PackageCall, SubsessionID: w.sub, Sequence: w.seq,
			CorrelationID: w.corr, MessageState: w.state},
		Header: protocol.Header{Action: w.act},
	}
	if w.typ == protocol.TypeError {
		f.Header.ErrorCode = w.code
	} else {
		f.Header.ResponseCode = w.code
	}
	if w.p != (protocol.CallPayload{}) {
		f.Payload = protocol.EncodePayload(w.p)
	}
	return f
}

// send hands a web frame to the handler.
func (e *env) send(ep *fakeEP, w wf) { e.h.HandleFrame(ep, w.frame()) }

// outgoing starts a call from a fresh web caller to SIP and returns both
// sides, with the INVITE sent.
func (e *env) outgoing(t *testing.T) (*fakeEP, *fakeCall) {
	t.Helper()
	return e.outgoingTo(t, "bob@sip.example")
}

// outgoingTo is outgoing to target.
func (e *env) outgoingTo(t *testing.T, target string) (*fakeEP, *fakeCall) {
	t.Helper()
	a := e.ep("alice@web.example")
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = target
	e.h.HandleFrame(a, f)
	return a, e.dialled(t)
}

// answerOut makes the SIP side answer and the web caller complete.
func (e *env) answerOut(t *testing.T, a *fakeEP, fc *fakeCall) {
	t.Helper()
	fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer)})
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 200 {
		t.Fatalf("answer %d", f.Header.ResponseCode)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionComplete, sub: "c1", seq: 2, corr: "c1"})
	fc.expectOp(t, "ack")
}

// incoming rings n web sessions of bob with a SIP call; it returns the
// sessions with the sub and correlation of their start.
func (e *env) incoming(t *testing.T, n int, mod ...func(*fakeEP)) (*fakeCall, []*fakeEP, []*protocol.Frame) {
	t.Helper()
	var eps []*fakeEP
	for range n {
		ep := e.ep("bob@web.example")
		for _, m := range mod {
			m(ep)
		}
		eps = append(eps, ep)
	}
	fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
	fc.offer = []byte(sipOffer)
	e.h.incomingSIP(fc)
	var starts []*protocol.Frame
	for _, ep := range eps {
		ep.mu.Lock()
		down := ep.down
		ep.mu.Unlock()
		if down {
			starts = append(starts, nil)
			continue
		}
		starts = append(starts, ep.expect(t, protocol.TypeRequest, protocol.ActionStart))
	}
	return fc, eps, starts
}

// answerIn makes callee ep answer and the SIP side ACK.
func (e *env) answerIn(t *testing.T, fc *fakeCall, ep *fakeEP, start *protocol.Frame) {
	t.Helper()
	e.send(ep, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: start.Control.SubsessionID, seq: 1,
		corr: start.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "answer")
	fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	ep.expect(t, protocol.TypeMessage, protocol.ActionComplete)
}

func (c *fakeCall) Request(ctx context.Context, r sipgw.Request) (sipgw.Answer, error) {
	c.record(op{name: "request", sdp: string(r.Body), info: sipgw.Info{Package: r.InfoPackage, ContentType: r.ContentType}})
	return sipgw.Answer{Code: 200, Reason: "OK", ContentType: "application/json", Body: []byte(`{"rank":1}`)}, nil
}

// pushDeclared sends an INFO of a declared package from the SIP side.
func (c *fakeCall) pushDeclared(pkg, body string, hs ...sipgw.Header) *fakeInfo {
	fi := &fakeInfo{answered: make(chan sipgw.Answer, 1)}
	c.mu.Lock()
	c.infos = append(c.infos, fi)
	c.mu.Unlock()
	c.push(sipgw.Event{Kind: sipgw.EventInfo, InfoPackage: pkg, ContentType: "application/json", Body: []byte(body),
		InfoRequest: &sipgw.InfoRequest{Headers: hs}})
	return fi
}

// pushRequest sends a NOTIFY, MESSAGE or UPDATE of a declared action
// from the SIP side, whose mark (Event or Content-Type) is mark.
func (c *fakeCall) pushRequest(method, mark, body string) *fakeInfo {
	fi := &fakeInfo{answered: make(chan sipgw.Answer, 1)}
	c.mu.Lock()
	c.infos = append(c.infos, fi)
	c.mu.Unlock()
	c.push(sipgw.Event{Kind: sipgw.EventInfo, ContentType: "application/json", Body: []byte(body),
		InfoRequest: &sipgw.InfoRequest{Method: method, Mark: mark}})
	return fi
}

func (c *fakeCall) declaredInfo(ev sipgw.Event) infoAnswer {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi := c.infos[0]
	c.infos = c.infos[1:]
	return fi
}

// fakeInfo records the answer to a declared INFO.
type fakeInfo struct {
	answered chan sipgw.Answer
	n        atomic.Int32
}

func (fi *fakeInfo) Respond(a sipgw.Answer) {
	if fi.n.Add(1) == 1 {
		fi.answered <- a
	}
}
