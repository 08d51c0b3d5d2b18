package gateway

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// batchingStore is a Memory store that notes the keys of each batch and
// can fail the next one.
type batchingStore struct {
	*store.Memory
	mu      sync.Mutex
	batches [][]string
	fail    error // the next WriteBatch's error, nothing written
	// before runs at the next WriteBatch that writes key, before it
	// writes.
	before func()
	key    string
}

func (b *batchingStore) WriteBatch(ctx context.Context, ws []store.Write) ([]uint64, error) {
	var keys []string
	for _, w := range ws {
		keys = append(keys, w.Key)
	}
	b.mu.Lock()
	b.batches = append(b.batches, keys)
	fail, before := b.fail, b.before
	b.fail = nil
	if before != nil && slices.Contains(keys, b.key) {
		b.before = nil
	} else {
		before = nil
	}
	b.mu.Unlock()
	if before != nil {
		before()
	}
	if fail != nil {
		return nil, fail
	}
	return b.Memory.WriteBatch(ctx, ws)
}

// batchWith reports whether a batch held all of keys.
func (b *batchingStore) batchWith(keys ...string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, got := range b.batches {
		if !slices.ContainsFunc(keys, func(k string) bool { return !slices.Contains(got, k) }) {
			return true
		}
	}
	return false
}

func (b *batchingStore) failNext(err error) {
	b.mu.Lock()
	b.fail = err
	b.mu.Unlock()
}

func (b *batchingStore) beforeWriting(key string, f func()) {
	b.mu.Lock()
	b.before, b.key = f, key
	b.mu.Unlock()
}

// messageTo sends a message from a to target and returns it as read by
// each of to.
func messageTo(t *testing.T, a *peer, target string, to ...*peer) {
	t.Helper()
	a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header: protocol.Header{Action: protocol.ActionSend, Target: target}, Payload: []byte(`{"content_type":"text/plain","body":"hi"}`)})
	for _, p := range to {
		if m := p.read(); m.Header.Action != protocol.ActionSend || m.Control.Type != protocol.TypeRequest {
			t.Fatalf("got %s, want the message", m.Marshal())
		}
	}
}

// aliceAndTwoBobs: a gateway on a batching store, alice's session and
// two of bob's.
func aliceAndTwoBobs(t *testing.T) (st *batchingStore, a, b1, b2 *peer) {
	t.Helper()
	st = &batchingStore{Memory: store.NewMemory()}
	_, url := newGatewayOpts(t, nil, Options{Store: st})
	a = dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b1 = dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b1.connect("bob@example.com")
	b2 = dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b2.connect("bob@example.com")
	return st, a, b1, b2
}

// relayStored checks that the records of to hold a's relay.
func relayStored(t *testing.T, st *batchingStore, a *peer, to ...*peer) {
	t.Helper()
	for _, p := range to {
		if v, _, err := st.Get(context.Background(), recordKey(p.sid)); err != nil || !strings.Contains(string(v), `"from":"`+a.sid) {
			t.Fatalf("record of %s: %q %v, want alice's relay", p.sid, v, err)
		}
	}
}

// TestRoundWrittenAsOneBatch: the sessions a round writes go to a
// batching store as one batch (a replicated bucket then agrees on one
// entry, not one per record: docs/benchmarks.md "Cluster"), and the
// records hold what was written.
func TestRoundWrittenAsOneBatch(t *testing.T) {
	st, a, b1, b2 := aliceAndTwoBobs(t)
	// A message to bob is relayed to both his sessions in one
	// processing: both are in the round that releases it.
	messageTo(t, a, "bob@example.com", b1, b2)
	if !st.batchWith(recordKey(b1.sid), recordKey(b2.sid)) {
		t.Fatalf("bob's sessions not written in one batch: %q", st.batches)
	}
	relayStored(t, st, a, b1, b2)
}

// TestFailedBatchWrittenOneByOne: a batch that fails (a leader being
// elected, an answer lost) is written again one record at a time, and
// its frames go out only then.
func TestFailedBatchWrittenOneByOne(t *testing.T) {
	st, a, b1, b2 := aliceAndTwoBobs(t)
	st.failNext(errors.New("answer lost"))
	messageTo(t, a, "bob@example.com", b1, b2)
	relayStored(t, st, a, b1, b2)
}

// TestBatchConflictEndsOnlyItsSession: one record of a batch taken over
// by another writer refuses the whole batch; written one by one, the
// other sessions' frames go out, and only the copy whose record is no
// longer its own ends, without its frame.
func TestBatchConflictEndsOnlyItsSession(t *testing.T) {
	st, a, b1, b2 := aliceAndTwoBobs(t)
	st.beforeWriting(recordKey(b2.sid), func() {
		// Another writer takes b2's record over, as a resume elsewhere
		// (it writes its own name in it: bytes of its own).
		ctx := context.Background()
		v, rev, err := st.Get(ctx, recordKey(b2.sid))
		if err == nil {
			_, err = st.Update(ctx, recordKey(b2.sid), append(v, ' '), rev)
		}
		if err != nil {
			t.Error(err)
		}
	})
	messageTo(t, a, "bob@example.com", b1)
	frames, _ := b2.drain()
	for _, f := range frames {
		if strings.Contains(f, `"hi"`) {
			t.Fatalf("b2's copy, its record another's, sent the message: %s", f)
		}
	}
	if !st.batchWith(recordKey(b2.sid)) {
		t.Fatalf("b2 not written in a batch: %q", st.batches)
	}
}

// timingOutBatch batches over a store that has no batches (writing one
// by one: enough for the gateway's side), logs each write, and can
// answer the next batch with a timeout.
type timingOutBatch struct {
	store.Store
	mu       sync.Mutex
	log      []string // "batch", "timeout" or "update KEY"
	timeout  bool
	timedOut []string // the keys of the batch answered with a timeout
}

func (w *timingOutBatch) note(s string) {
	w.mu.Lock()
	w.log = append(w.log, s)
	w.mu.Unlock()
}

func (w *timingOutBatch) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	w.note("update " + key)
	return w.Store.Update(ctx, key, value, rev)
}

func (w *timingOutBatch) WriteBatch(ctx context.Context, ws []store.Write) ([]uint64, error) {
	w.mu.Lock()
	timeout := w.timeout
	w.timeout = false
	w.mu.Unlock()
	if timeout {
		w.mu.Lock()
		for _, x := range ws {
			w.timedOut = append(w.timedOut, x.Key)
		}
		w.mu.Unlock()
		w.note("timeout")
		return nil, context.DeadlineExceeded
	}
	w.note("batch")
	revs := make([]uint64, len(ws))
	for i, x := range ws {
		var err error
		if x.Rev == 0 {
			revs[i], err = w.Store.Create(ctx, x.Key, x.Value)
		} else {
			revs[i], err = w.Store.Update(ctx, x.Key, x.Value, x.Rev)
		}
		if err != nil {
			return nil, err
		}
	}
	return revs, nil
}

// TestBatchTimeoutWaitsForNextRound: in a cluster, a batch the store
// answered nothing to within its time (a bucket electing a leader) is
// not written again record by record, each waiting as long again: its
// frames wait for the next round, written as a batch again.
func TestBatchTimeoutWaitsForNextRound(t *testing.T) {
	var w *timingOutBatch
	_, urls := newClusterGatewaysOn(t, 1, func(s store.Store) store.Store {
		w = &timingOutBatch{Store: s}
		return w
	})
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b1 := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	b1.connect("bob@example.com")
	b2 := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	b2.connect("bob@example.com")
	w.mu.Lock()
	w.timeout, w.log = true, nil
	w.mu.Unlock()
	messageTo(t, a, "bob@example.com", b1, b2)
	w.mu.Lock()
	defer w.mu.Unlock()
	i := slices.Index(w.log, "timeout")
	if i < 0 || slices.Index(w.log[i:], "batch") < 0 {
		t.Fatalf("writes %q: want a batch timed out, then a batch", w.log)
	}
	// The timed-out batch's records are not each written again on their
	// own (the fallback of a batch that failed otherwise). One of them
	// may be: a record is also written outside the writer's rounds
	// (save: a session's start, a socket's loss), and such a write came
	// between the timeout and the next round in 1 run of about 20
	// under -race.
	alone := 0
	for _, op := range w.log[i:] {
		for _, k := range w.timedOut {
			if op == "update "+k {
				alone++
			}
		}
	}
	if len(w.timedOut) > 1 && alone >= len(w.timedOut) {
		t.Fatalf("writes %q: the timed out batch's records %q each written on its own", w.log, w.timedOut)
	}
}
