package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// A session written by save (a socket loss, a start) while it waited in
// the writer's queue, then dirtied again, is queued once: queued twice,
// the writer's round took its saveMu twice and hung holding walMu, and
// with it every session's inbound frames (seen once in test/integration
// as a session end stuck on saveMu).
func TestSavedSessionQueuedOnce(t *testing.T) {
	g, url := newGatewayOpts(t, nil, Options{Store: store.NewMemory()})
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	s := g.lookup(a.connect("alice@example.com").Control.SessionID)
	// The writer takes its queue under walMu: held shared, the queue is
	// the test's until it lets go.
	g.walMu.RLock()
	s.mu.Lock()
	s.markDirtyLocked()
	s.mu.Unlock()
	g.save(s)
	s.mu.Lock()
	s.markDirtyLocked()
	s.mu.Unlock()
	g.dirtyMu.Lock()
	n := 0
	for _, d := range g.dirty {
		if d == s {
			n++
		}
	}
	g.dirtyMu.Unlock()
	g.walMu.RUnlock()
	if n != 1 {
		t.Fatalf("the session is queued %d times for the writer", n)
	}
	saved := make(chan struct{})
	go func() { g.save(s); close(saved) }()
	select {
	case <-saved:
	case <-time.After(10 * time.Second):
		t.Fatal("the session's record cannot be written: saveMu held")
	}
}

// lostAnswerStore applies an update and then, once, answers it with a
// revision conflict: what a replicated store does when the answer to a
// write was lost in a leader change and the client's retry is refused.
type lostAnswerStore struct {
	store.Store
	armed atomic.Bool
}

func (l *lostAnswerStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := l.Store.Update(ctx, key, value, rev)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return 0, store.ErrConflict
	}
	return n, err
}

// TestOwnWriteNotATakeover: a write the store applied but answered with
// a conflict is ours (the record holds what we wrote): the session goes
// on, with the record's revision, instead of ending as taken over (which
// made its client send an already relayed frame again on its resume: a
// duplicate, seen in test/cluster).
func TestOwnWriteNotATakeover(t *testing.T) {
	st := &lostAnswerStore{Store: store.NewMemory()}
	g, url := newGatewayOpts(t, nil, Options{Store: st})
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	sid := a.connect("alice@example.com").Control.SessionID
	st.armed.Store(true)
	g.save(g.lookup(sid)) // a record write the store answers with a conflict
	if st.armed.Load() {
		t.Fatal("no record update was made")
	}
	a.pingPong()
	g.save(g.lookup(sid)) // and the next write goes on from the record's revision
	if s := g.lookup(sid); s == nil || s.lost {
		t.Fatal("the session ended as taken over after its own write")
	}
}

// lostTimeoutStore applies an update and then, once, answers it with a
// timeout: the answer to a write lost in a leader change, which the
// gateway takes for a failed write (its frames go out unstored).
type lostTimeoutStore struct {
	store.Store
	armed atomic.Bool
}

func (l *lostTimeoutStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := l.Store.Update(ctx, key, value, rev)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return 0, context.DeadlineExceeded
	}
	return n, err
}

// TestClusterOwnLostWriteNotATakeover: in a cluster, a record write the
// store applied but answered with a timeout leaves the session's
// revision behind, and its next write meets a conflict with a record
// that names this node: no other node writes that (a takeover writes
// the taker's name), so the write is ours and is made again over it. The
// session went on as taken over before: ended, with the frames of the
// conflicting write lost (a message in test/cluster
// TestResumeOnAnotherNode).
func TestClusterOwnLostWriteNotATakeover(t *testing.T) {
	st := &lostTimeoutStore{}
	g, a := aliceOnNode(t, func(s store.Store) store.Store { st.Store = s; return st })
	s := g.lookup(a.sid)
	st.armed.Store(true)
	g.save(s) // applied, answered with a timeout
	if st.armed.Load() {
		t.Fatal("no record update was made")
	}
	// A frame that changes the record, written over our own write.
	s.Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	g.save(s) // after the writer's round, if it took the frame first
	s.mu.Lock()
	lost, ended := s.lost, s.ended
	s.mu.Unlock()
	if lost || ended || g.lookup(a.sid) != s {
		t.Fatalf("the session let go after its own write (lost %v, ended %v)", lost, ended)
	}
	if f := a.read(); f.Header.Action != protocol.ActionShutdown {
		t.Fatalf("alice read %s", f.Marshal())
	}
}

// unansweredStore, once armed, leaves an update unanswered until its
// context ends, unapplied: a write sent to a stream leader that hands
// over (a drain's StepDown) or dies. It notes how long that attempt was
// given.
type unansweredStore struct {
	store.Store
	armed  atomic.Bool
	given  atomic.Int64 // the unanswered attempt's budget, ns
	writes atomic.Int32 // updates after it
}

func (u *unansweredStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if u.armed.CompareAndSwap(true, false) {
		if dl, ok := ctx.Deadline(); ok {
			u.given.Store(int64(time.Until(dl)))
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	if u.given.Load() != 0 {
		u.writes.Add(1)
	}
	return u.Store.Update(ctx, key, value, rev)
}

// TestClusterUnansweredWriteMadeAgain: a record write nobody answers is
// made again after one attempt's bound, not left to wait out the
// store's whole timeout with the session's frames behind it: a message
// of test/cluster TestRollingRestart waited 5 s, four times in one run,
// for writes sent to leaders stepping down, and the stream stalled.
func TestClusterUnansweredWriteMadeAgain(t *testing.T) {
	st := &unansweredStore{}
	g, a := aliceOnNode(t, func(s store.Store) store.Store { st.Store = s; return st })
	s := g.lookup(a.sid)
	st.armed.Store(true)
	s.Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	if f := a.read(); f.Header.Action != protocol.ActionShutdown {
		t.Fatalf("alice read %s", f.Marshal())
	}
	if st.armed.Load() {
		t.Fatal("no record update was made")
	}
	if given := time.Duration(st.given.Load()); given > writeAttempt {
		t.Fatalf("the unanswered write was given %v, more than an attempt's %v", given, writeAttempt)
	}
	if st.writes.Load() == 0 {
		t.Fatal("the frame went out with no record write after the unanswered one")
	}
}
