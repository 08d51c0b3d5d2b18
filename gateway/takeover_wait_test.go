package gateway

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
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
	gs[1].resumeWait = 500 * time.Millisecond
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
