package presence

import (
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeEP is a session that records what it is sent.
type fakeEP struct {
	id, identity string

	mu     sync.Mutex
	seq    uint64
	in     uint64 // the client's sequence
	frames []*protocol.Frame
	dead   bool
	guest  bool
	quota  *fakeQuota
	// route, when set, is the session's routing decision for every
	// request (the gateway's sessions implement endpoint.Router).
	route *routing.Decision
}

func (e *fakeEP) Route(kind routing.Kind, target string, _ []protocol.Ext) routing.Decision {
	if e.route == nil {
		return routing.Decision{Action: routing.ActionBuiltin, Target: target}
	}
	return *e.route
}

func (e *fakeEP) Guest() bool { return e.guest }

// fakeQuota is an identity's subscription budget, shared by its
// sessions.
type fakeQuota struct {
	mu        sync.Mutex
	max, held int
}

func (q *fakeQuota) Held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held
}

func (e *fakeEP) AcquireSubscription() bool {
	if e.quota == nil {
		return true
	}
	e.quota.mu.Lock()
	defer e.quota.mu.Unlock()
	if e.quota.held >= e.quota.max {
		return false
	}
	e.quota.held++
	return true
}

func (e *fakeEP) ReleaseSubscription() {
	if e.quota != nil {
		e.quota.mu.Lock()
		e.quota.held--
		e.quota.mu.Unlock()
	}
}

// withQuota makes a connect's session take its subscriptions from q.
func withQuota(q *fakeQuota) func(*fakeEP) { return func(e *fakeEP) { e.quota = q } }

// guestEP makes a connect's session a guest's.
func guestEP(e *fakeEP) { e.guest = true }

func (e *fakeEP) ID() string       { return e.id }
func (e *fakeEP) Identity() string { return e.identity }
func (e *fakeEP) Oracle() bool     { return false }

func (e *fakeEP) Send(f *protocol.Frame, self bool) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return 0, errors.New("ended")
	}
	e.seq++
	f.Control.Sequence = e.seq
	f.Control.SessionID = e.id
	if self {
		f.Control.CorrelationID = "s" + strconv.FormatUint(e.seq, 10)
	}
	e.frames = append(e.frames, f)
	return e.seq, nil
}

// take returns the frames sent since the last take.
func (e *fakeEP) take() []*protocol.Frame {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.frames
	e.frames = nil
	return f
}

// fakeDir lists the sessions of the test.
type fakeDir struct {
	mu    sync.Mutex
	live  map[string][]*fakeEP
	known map[string]bool
}

func (d *fakeDir) Sessions(identity string) []endpoint.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []endpoint.Endpoint
	for _, e := range d.live[identity] {
		out = append(out, e)
	}
	return out
}

func (d *fakeDir) Known(identity string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known[identity]
}

// world is a Handler with its sessions.
type world struct {
	t   *testing.T
	dir *fakeDir
	h   *Handler
	n   int
}

func newWorld(t *testing.T, opts Options) *world {
	t.Helper()
	w := &world{t: t, dir: &fakeDir{live: map[string][]*fakeEP{}, known: map[string]bool{}}}
	w.h = NewHandler(w.dir, &opts)
	t.Cleanup(func() {
		for _, eps := range w.dir.live {
			for _, e := range eps {
				w.h.SessionEnded(e)
			}
		}
		if n := w.h.Subscriptions(); n != 0 {
			t.Errorf("%d subscriptions left after every session ended", n)
		}
		if n := w.h.Presentities(); n != 0 {
			t.Errorf("%d presentities left after every session ended", n)
		}
	})
	return w
}

// connect starts a session of identity, as the gateway does.
func (w *world) connect(identity string, opts ...func(*fakeEP)) *fakeEP {
	w.n++
	e := &fakeEP{id: "S" + strconv.Itoa(w.n) + "-" + identity, identity: identity}
	for _, o := range opts {
		o(e)
	}
	w.dir.mu.Lock()
	w.dir.live[identity] = append(w.dir.live[identity], e)
	w.dir.known[identity] = true
	w.dir.mu.Unlock()
	w.h.SessionStarted(e)
	return e
}

// end ends a session, as the gateway does: out of the directory first.
func (w *world) end(e *fakeEP) {
	w.dir.mu.Lock()
	list := w.dir.live[e.identity]
	for i, x := range list {
		if x == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	w.dir.live[e.identity] = list
	if len(list) == 0 {
		delete(w.dir.live, e.identity)
	}
	w.dir.mu.Unlock()
	e.mu.Lock()
	e.dead = true
	e.mu.Unlock()
	w.h.SessionEnded(e)
}

// frame sends a client frame from e.
func (w *world) frame(e *fakeEP, typ protocol.Type, action protocol.Action, sub string, h protocol.Header, payload string) {
	e.mu.Lock()
	e.in++
	seq := e.in
	e.mu.Unlock()
	h.Action = action
	f := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackagePresence, SessionID: e.id, SubsessionID: sub,
			Sequence: seq, CorrelationID: "c" + strconv.FormatUint(seq, 10)},
		Header: h,
	}
	if payload != "" {
		f.Payload = json.RawMessage(payload)
	}
	if err := protocol.Validate(f); err != nil {
		w.t.Fatalf("test frame invalid: %v", err)
	}
	w.h.HandleFrame(e, f)
}

func (w *world) watch(e *fakeEP, sub, target string, expiry int) {
	w.frame(e, protocol.TypeRequest, protocol.ActionStart, sub,
		protocol.Header{Initiator: e.identity, Target: target, Expiry: expiry}, "")
}

func (w *world) unwatch(e *fakeEP, sub string) {
	w.frame(e, protocol.TypeMessage, protocol.ActionShutdown, sub, protocol.Header{}, "")
}

func (w *world) publish(e *fakeEP, payload string) {
	w.frame(e, protocol.TypeRequest, protocol.ActionPublish, "p"+strconv.FormatUint(e.in+1, 10),
		protocol.Header{Initiator: e.identity, Target: e.identity}, payload)
}

func payloadOf(t *testing.T, f *protocol.Frame) protocol.PresencePayload {
	t.Helper()
	var p protocol.PresencePayload
	if err := json.Unmarshal(f.Payload, &p); err != nil {
		t.Fatalf("payload %s: %v", f.Payload, err)
	}
	return p
}

// expectAccepted checks that frames are a 200 to a start with expiry,
// then a notify of want.
func expectAccepted(t *testing.T, frames []*protocol.Frame, sub string, expiry int, want protocol.PresencePayload) {
	t.Helper()
	if len(frames) != 2 {
		t.Fatalf("got %d frames, want a response and a notify: %s", len(frames), dump(frames))
	}
	r := frames[0]
	if r.Control.Type != protocol.TypeResponse || r.Header.Action != protocol.ActionStart || r.Header.ResponseCode != 200 ||
		r.Control.SubsessionID != sub || r.Header.Expiry != expiry || r.Control.Package != protocol.PackagePresence {
		t.Fatalf("response: %s", dump(frames[:1]))
	}
	expectNotify(t, frames[1:], sub, want)
}

func expectNotify(t *testing.T, frames []*protocol.Frame, sub string, want protocol.PresencePayload) {
	t.Helper()
	if len(frames) != 1 {
		t.Fatalf("got %d frames, want one notify: %s", len(frames), dump(frames))
	}
	n := frames[0]
	if n.Control.Type != protocol.TypeMessage || n.Header.Action != protocol.ActionNotify || n.Control.SubsessionID != sub ||
		n.Control.Package != protocol.PackagePresence || n.Control.CorrelationID == "" {
		t.Fatalf("notify: %s", dump(frames))
	}
	if got := payloadOf(t, n); got != want {
		t.Fatalf("notify payload %+v, want %+v", got, want)
	}
}

func expectError(t *testing.T, frames []*protocol.Frame, action protocol.Action, code int) {
	t.Helper()
	if len(frames) != 1 || frames[0].Control.Type != protocol.TypeError || frames[0].Header.ErrorCode != code ||
		frames[0].Header.Action != action || frames[0].Header.Reason == "" {
		t.Fatalf("want error %d to %s, got %s", code, action, dump(frames))
	}
}

func expectNothing(t *testing.T, eps ...*fakeEP) {
	t.Helper()
	for _, e := range eps {
		if f := e.take(); len(f) != 0 {
			t.Fatalf("%s got %s, want nothing", e.identity, dump(f))
		}
	}
}

func dump(frames []*protocol.Frame) string {
	s := ""
	for _, f := range frames {
		s += "\n  " + string(f.Marshal())
	}
	return s
}
