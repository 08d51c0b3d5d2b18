package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
)

// heldStore holds its updates while held is open: a replicated bucket
// electing a leader, as seen by the node whose writes wait for it.
type heldStore struct {
	store.Store
	mu   sync.Mutex
	held chan struct{}
}

func (h *heldStore) hold() {
	h.mu.Lock()
	h.held = make(chan struct{})
	h.mu.Unlock()
}

func (h *heldStore) lift() {
	h.mu.Lock()
	if h.held != nil {
		close(h.held)
		h.held = nil
	}
	h.mu.Unlock()
}

func (h *heldStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	h.mu.Lock()
	held := h.held
	h.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return h.Store.Update(ctx, key, value, rev)
}

// readWatch calls onRead at its first read of key once armed.
type readWatch struct {
	store.Store
	mu     sync.Mutex
	key    string
	onRead func()
}

func (r *readWatch) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	r.mu.Lock()
	fn := r.onRead
	if key == r.key {
		r.onRead = nil
	}
	r.mu.Unlock()
	if fn != nil && key == r.key {
		fn()
	}
	return r.Store.Get(ctx, key)
}

// takenFrameBeforeTakeover connects alice to n1 of two nodes, holds n1's
// store writes, has n1 take a frame for her (its write held), and cuts
// her socket: n1 owes the store the frame when her resume reaches n2.
func takenFrameBeforeTakeover(t *testing.T) (gs []*Gateway, urls []string, n1 *heldStore, n2 *readWatch, a *peer, seq uint64, resume string) {
	t.Helper()
	n1, n2 = &heldStore{}, &readWatch{}
	wraps := []func(store.Store) store.Store{
		func(s store.Store) store.Store { n1.Store = s; return n1 },
		func(s store.Store) store.Store { n2.Store = s; return n2 },
	}
	next := 0
	gs, urls = newClusterGatewaysOn(t, 2, func(s store.Store) store.Store { next++; return wraps[next-1](s) })
	t.Cleanup(n1.lift)
	a = dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	n1.hold()
	seq, err := gs[0].lookup(a.sid).Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	if err != nil {
		t.Fatal(err)
	}
	a.c.CloseNow()
	n2.mu.Lock()
	n2.key = recordKey(a.sid)
	n2.mu.Unlock()
	resume = `{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`
	return gs, urls, n1, n2, a, seq, resume
}

// TestTakeoverWaitsForTheOwnersLastWrite: a resume on n2 of a session
// whose owner n1 is alive and still writing its last state (its write
// waits out a leader election longer than one cluster request, 3 s)
// waits for n1's answer, within the resume's budget, and resumes from
// the record n1 wrote: the frame n1 took last reaches the client. Before,
// n2 gave up after 3 s and resumed from the record before it; the frame
// was lost (issue 13: TestRollingRestart, test/cluster).
func TestTakeoverWaitsForTheOwnersLastWrite(t *testing.T) {
	_, urls, n1, n2, a, seq, resume := takenFrameBeforeTakeover(t)
	// The election ends 3.5 s after n2 reads the record, past the 3 s
	// that n2 waited for n1 before.
	n2.mu.Lock()
	n2.onRead = func() { time.AfterFunc(clusterTimeout+500*time.Millisecond, n1.lift) }
	n2.mu.Unlock()
	resumesWithFrame(t, urls[1], resume, a.sid, seq)
}

// TestTakeoverPastTheBudgetResumesAgain: when the live owner does not let
// go within the resume's budget, the client is told to resume again
// (1013) rather than resumed from a record the owner may still write;
// its next resume, once the owner's write landed, gets the frame.
func TestTakeoverPastTheBudgetResumesAgain(t *testing.T) {
	gs, urls, n1, _, a, seq, resume := takenFrameBeforeTakeover(t)
	gs[1].resumeWait.Store(int64(500 * time.Millisecond))
	b := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	b.write(resume)
	if code := b.closeCode(); code != 1013 {
		t.Fatalf("resume while the owner writes past the budget: closed with %d, want 1013", code)
	}
	n1.lift()
	resumesWithFrame(t, urls[1], resume, a.sid, seq)
}

// resumesWithFrame resumes session sid at url and reads the frame seq,
// the one its previous owner took last.
func resumesWithFrame(t *testing.T, url, resume, sid string, seq uint64) {
	t.Helper()
	p := dial(t, url, protocol.SubprotocolOracle, nil)
	p.write(resume)
	if r := p.read(); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != sid {
		t.Fatalf("resume answered %s, want the session %s resumed", r.Marshal(), sid)
	}
	if f := p.read(); f.Control.Sequence != seq {
		t.Fatalf("alice read %s after her resume, want the frame n1 took (sequence %d)", f.Marshal(), seq)
	}
}

// unroutedOwner connects alice to n1 of two nodes and makes n1's
// subjects unreachable while its lease stays current, as a NATS route
// not up yet leaves them: n1's node is replaced by one of the same name
// that serves nothing (serve makes it serve n1's takeovers). Alice's
// socket is cut: her resume on n2 must reach n1.
func unroutedOwner(t *testing.T) (gs []*Gateway, urls []string, a *peer, serve func(asked chan<- struct{}), stop func()) {
	t.Helper()
	var e *natsstore.Embedded
	gs, urls = newClusterGatewaysOn(t, 2, func(s store.Store) store.Store {
		e = s.(*natsstore.Embedded)
		return s
	})
	a = dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	gs[0].node.Close()
	n1, err := cluster.Start(context.Background(), e.Conn(), cluster.Options{Name: "n1", LeaseTTL: 3 * time.Second, DirectoryTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n1.Close)
	a.c.CloseNow()
	serve = func(asked chan<- struct{}) {
		err := n1.Handle(kindTakeover, func(data []byte) []byte {
			close(asked)
			return gs[0].onTakeover(data)
		})
		if err != nil {
			t.Error(err)
		}
	}
	return gs, urls, a, serve, n1.Close
}

// aliceResume is alice's resume after her connect: it matches the live
// state.
func aliceResume(sid string) string {
	return `{"control":{"type":"request","package_type":"register","session_id":"` + sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`
}

// metNoRoute reports whether g's takeover requests found no responders.
func metNoRoute(t *testing.T, g *Gateway) bool {
	return strings.Contains(scrape(t, g), `jsonrtc_cluster_requests_total{kind="takeover",outcome="no_route"}`)
}

// resumeAnswer sends the resume on a socket to url and hands over the
// first frame (or the close) it gets, read on a goroutine of the test's.
func resumeAnswer(t *testing.T, url, resume string) <-chan string {
	t.Helper()
	p := dial(t, url, protocol.SubprotocolOracle, nil)
	p.write(resume)
	out := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, data, err := p.c.Read(ctx)
		if err != nil {
			out <- fmt.Sprintf("closed %d: %v", websocket.CloseStatus(err), err)
			return
		}
		out <- string(data)
	}()
	return out
}

// TestTakeoverWaitsForAnUnroutedOwner: a resume on n2 of a session whose
// owner n1 holds a current lease but whose subjects n2 cannot reach yet
// (no responders: a route forming at the cluster's start or after a
// restart) asks n1 again until it answers, and resumes once n1 let go.
// Before, n2 took "no responders" for a dead n1 and took the record over
// without n1's release: n1's copy of the session went on, and ended as
// superseded at its next write (issue 13, TestRollingRestart).
func TestTakeoverWaitsForAnUnroutedOwner(t *testing.T) {
	gs, urls, a, serve, _ := unroutedOwner(t)
	answer := resumeAnswer(t, urls[1], aliceResume(a.sid))
	asked := make(chan struct{})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for served := false; ; {
		select {
		case got := <-answer:
			select {
			case <-asked:
			default:
				t.Fatalf("resume on n2 answered %s without n1's release, n1 alive (its lease current)", got)
			}
			if !strings.Contains(got, `"type":"response"`) || !strings.Contains(got, a.sid) {
				t.Fatalf("resume on n2 answered %s, want the session %s resumed", got, a.sid)
			}
			if gs[0].lookup(a.sid) != nil {
				t.Fatal("n1 still serves the session n2 took over")
			}
			return
		case <-tick.C:
			// n2 met no responders: the route comes up.
			if !served && metNoRoute(t, gs[1]) {
				served = true
				serve(asked)
			}
		}
	}
}

// TestTakeoverUnroutedOwnerLeaseGone: the owner n2 cannot reach is not
// waited for once its lease is gone (a killed node's, expired; here
// given up): the resume takes the record over.
func TestTakeoverUnroutedOwnerLeaseGone(t *testing.T) {
	gs, urls, a, _, stop := unroutedOwner(t)
	answer := resumeAnswer(t, urls[1], aliceResume(a.sid))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for stopped := false; ; {
		select {
		case got := <-answer:
			if !stopped {
				t.Fatalf("resume on n2 answered %s while n1 was alive and never asked", got)
			}
			if !strings.Contains(got, `"type":"response"`) || !strings.Contains(got, a.sid) {
				t.Fatalf("resume on n2 answered %s, want the session %s resumed", got, a.sid)
			}
			return
		case <-tick.C:
			if !stopped && metNoRoute(t, gs[1]) {
				stopped = true
				stop()
			}
		}
	}
}

// TestTakeoverUnroutedOwnerPastTheBudget: an owner alive and unreachable
// for the whole budget is not taken for dead: the client resumes again
// (1013).
func TestTakeoverUnroutedOwnerPastTheBudget(t *testing.T) {
	gs, urls, a, _, _ := unroutedOwner(t)
	gs[1].resumeWait.Store(int64(time.Second))
	if got := <-resumeAnswer(t, urls[1], aliceResume(a.sid)); !strings.HasPrefix(got, "closed 1013") {
		t.Fatalf("resume on n2 while n1 was unreachable past the budget: %s, want closed 1013", got)
	}
}

// failingStore fails its updates outright while failing is set: a store
// silent past the write timeout, as the writer sees it.
type failingStore struct {
	store.Store
	failing atomic.Bool
}

func (f *failingStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if f.failing.Load() {
		return 0, errors.New("test: the store does not answer")
	}
	return f.Store.Update(ctx, key, value, rev)
}

// TestTakeoverKeepsAnUnwrittenSession: an owner whose last write fails
// outright keeps the session and the resume elsewhere is told to resume
// again (1013); once the store takes the write, the next resume gets the
// frame the owner took last. Before, the owner let go without it and the
// new owner resumed from the record before: the frame was lost (issue
// 13, docs/cluster.md "Known defects": a draining node's last write).
func TestTakeoverKeepsAnUnwrittenSession(t *testing.T) {
	n1 := &failingStore{}
	gs, urls := newClusterGatewaysOn(t, 2, firstWrapped(func(s store.Store) store.Store { n1.Store = s; return n1 }))
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	a.c.CloseNow()
	n1.failing.Store(true)
	seq, err := gs[0].lookup(a.sid).Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	if err != nil {
		t.Fatal(err)
	}
	resume := aliceResume(a.sid)
	if got := <-resumeAnswer(t, urls[1], resume); !strings.HasPrefix(got, "closed 1013") {
		t.Fatalf("resume on n2 while n1 could not write its last state: %s, want closed 1013", got)
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("n1 let go of a session whose last state it could not write")
	}
	n1.failing.Store(false)
	resumesWithFrame(t, urls[1], resume, a.sid, seq)
}

// casHold, once armed, holds the caller of its first successful update
// of key after the update landed: a resume whose compare-and-set took
// the record, its session not yet in the node's tables.
type casHold struct {
	store.Store
	mu     sync.Mutex
	key    string
	landed chan struct{}
	hold   chan struct{}
}

func (c *casHold) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := c.Store.Update(ctx, key, value, rev)
	c.mu.Lock()
	armed := err == nil && key == c.key && c.landed != nil
	landed, hold := c.landed, c.hold
	if armed {
		c.landed = nil
	}
	c.mu.Unlock()
	if armed {
		close(landed)
		<-hold
	}
	return n, err
}

// TestTakeoverOfASessionBeingResumed: n1 resumes alice's session and has
// taken its record over, not yet put it in its tables, when a connect of
// hers that she gave up on, read late by n2, asks n1 to let go: n1
// answers "resuming" and n2 closes that socket with 1013; n1's resume
// completes and the session lives on there. Before, n1 answered "ok" (no
// such session here), n2 took the record from under it, and n1's copy,
// the one the client used, ended as superseded at its next write
// (TestRollingRestart, test/cluster).
func TestTakeoverOfASessionBeingResumed(t *testing.T) {
	n1 := &casHold{}
	gs, urls := newClusterGatewaysOn(t, 2, firstWrapped(func(s store.Store) store.Store { n1.Store = s; return n1 }))
	a := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	a.c.CloseNow()
	landed, hold := make(chan struct{}), make(chan struct{})
	n1.mu.Lock()
	n1.key, n1.landed, n1.hold = recordKey(a.sid), landed, hold
	n1.mu.Unlock()
	resume := aliceResume(a.sid)
	onN1 := resumeAnswer(t, urls[0], resume)
	<-landed
	if got := <-resumeAnswer(t, urls[1], resume); !strings.HasPrefix(got, "closed 1013") {
		close(hold)
		t.Fatalf("late connect on n2 while n1 resumed the session: %s, want closed 1013", got)
	}
	close(hold)
	if got := <-onN1; !strings.Contains(got, `"type":"response"`) || !strings.Contains(got, a.sid) {
		t.Fatalf("resume on n1 answered %s, want the session %s resumed", got, a.sid)
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("n1 lost the session it resumed")
	}
}

// firstWrapped is a wrap of newClusterGatewaysOn that wraps the first
// node's store with wrap, and no other's.
func firstWrapped(wrap func(store.Store) store.Store) func(store.Store) store.Store {
	first := true
	return func(s store.Store) store.Store {
		if first {
			first = false
			return wrap(s)
		}
		return s
	}
}

// conflictOnce, once armed, refuses the next update as a revision
// conflict without applying it: a leader elected a moment ago that has
// not applied the session's last write yet.
type conflictOnce struct {
	store.Store
	armed atomic.Bool
}

func (c *conflictOnce) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if c.armed.CompareAndSwap(true, false) {
		return 0, store.ErrConflict
	}
	return c.Store.Update(ctx, key, value, rev)
}

// TestClusterOwnConflictKeepsSession: a write refused as a conflict
// while the record still names this node and nobody took it over is
// made again, and the session goes on: its frame reaches the client.
// Before, the copy took it for a takeover and ended as superseded
// (TestRollingRestart, test/cluster, after a leader step-down).
func TestClusterOwnConflictKeepsSession(t *testing.T) {
	st := &conflictOnce{}
	keepsOnOwnConflict(t, func(s store.Store) store.Store { st.Store = s; return st }, &st.armed)
}

// keepsOnOwnConflict connects alice to a node on the store wrap makes,
// arms it, sends her a frame, and checks that it reaches her and that
// her session goes on.
func keepsOnOwnConflict(t *testing.T, wrap func(store.Store) store.Store, armed *atomic.Bool) {
	t.Helper()
	g, a := aliceOnNode(t, wrap)
	armed.Store(true)
	seq, err := g.lookup(a.sid).Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if f := a.read(); f.Control.Sequence != seq {
		t.Fatalf("alice read %s, want the frame sent (sequence %d)", f.Marshal(), seq)
	}
	if g.lookup(a.sid) == nil {
		t.Fatal("the session ended on a conflict with its own record")
	}
}

// TestTakeoverAskedAgainAfterTakeBack: n1 lets go of alice for a resume
// on n2 (a connect her client gave up on), then takes her back for her
// client's resume on n1 before n2 reads the record. n2 sees the record
// written by n1 after its last write as it let go, asks n1 again, and n1,
// whose socket is the client's, refuses: n2's connect closes with 1013
// and alice stays on n1. Before, n2 took the record over without asking,
// and n1's next write closed alice's live socket with 4000 (the cluster
// chaos test at 40 sessions).
func TestTakeoverAskedAgainAfterTakeBack(t *testing.T) {
	n2 := &readWatch{}
	next := 0
	gs, urls := newClusterGatewaysOn(t, 2, func(s store.Store) store.Store {
		next++
		if next == 2 {
			n2.Store = s
			return n2
		}
		return s
	})
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	a.c.CloseNow()
	resume := `{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`
	var a2 *peer
	var stillOpen func()
	n2.mu.Lock()
	n2.key = recordKey(a.sid)
	n2.onRead = func() {
		// n2's first read: the second comes after n1 let go.
		n2.mu.Lock()
		n2.onRead = func() {
			a2 = dial(t, urls[0], protocol.SubprotocolOracle, nil)
			a2.write(resume)
			if r := a2.read(); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
				t.Errorf("resume on n1 answered %s", r.Marshal())
			}
			stillOpen = a2.answering()
		}
		n2.mu.Unlock()
	}
	n2.mu.Unlock()
	stale := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	stale.write(resume)
	if code := stale.closeCode(); code != 1013 {
		t.Fatalf("the connect on n2 closed with %d, want 1013", code)
	}
	if a2 == nil {
		t.Fatal("n2 did not read the record twice")
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("n1 let go of alice")
	}
	stillOpen()
}
