// Package store keeps replicated state: session records that let a
// client resume after its node restarted (and, with a cluster, on another
// node). [Memory] serves one process; store/natsstore keeps the records in
// a NATS JetStream key-value bucket, on disk. Both pass the contract
// suite in store/storetest.
//
// Every value has a revision that grows with each write. Ownership of a
// record changes by compare-and-set: [Store.Create] only where there is
// no value, [Store.Update] only over the revision last read or written,
// so that two writers cannot both own one session.
//
// Values are opaque bytes: the store knows nothing of sessions, so it
// stays at the bottom of the import graph.
package store

import (
	"context"
	"errors"
	"strings"
	"sync"
)

var (
	// ErrNotFound is returned by Get for a key that is not there.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict is returned by Create for a key that is there and by
	// Update for a key whose revision is not the one given: another
	// writer got there first.
	ErrConflict = errors.New("store: revision conflict")
	// ErrTooLarge is returned for a value over the store's size bound.
	ErrTooLarge = errors.New("store: value too large")
	// ErrNoBatch is returned by a Batcher that cannot batch after all
	// (its configuration): write one by one, and stop trying.
	ErrNoBatch = errors.New("store: no batches here")
)

// Store is a key-value store of records with revisions.
type Store interface {
	// Create stores value under key if there is none, and returns its
	// revision; ErrConflict if key is there.
	Create(ctx context.Context, key string, value []byte) (rev uint64, err error)
	// Update stores value under key if the key's revision is rev, and
	// returns the new revision; ErrConflict otherwise (a missing key
	// included: it was deleted or expired).
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Get returns the value under key and its revision, or ErrNotFound.
	Get(ctx context.Context, key string) (value []byte, rev uint64, err error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Keys returns the keys that begin with prefix, in no order.
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Len returns the number of keys, for leak checks.
	Len(ctx context.Context) (int, error)
}

// Write is one write of a batch: a Create where Rev is 0, an Update over
// Rev otherwise; with Delete, the key's deletion, only while its
// revision is Rev (a conflict otherwise, a missing key included), or
// whatever is there where Rev is 0 (a missing key then is no conflict).
type Write struct {
	Key    string
	Value  []byte
	Rev    uint64
	Delete bool
}

// Batcher is a Store that also writes many records as one operation, all
// of them or none: a replicated store then agrees on one entry, not on
// one per record.
type Batcher interface {
	// WriteBatch makes the writes and returns their revisions, in
	// order (0 for a deletion); ErrConflict, with none made, if any is
	// a conflict. A key
	// may appear once. An error other than ErrConflict may leave it
	// unknown whether the batch was made (an answer lost): write again
	// one by one, which Update tells from another writer's.
	WriteBatch(ctx context.Context, ws []Write) ([]uint64, error)
}

// Sizer is a Store that says how much it holds: for the metrics.
type Sizer interface {
	// Size returns the records held and the bytes they take in the
	// store (with its own overhead, and for a replicated store on each
	// replica).
	Size(ctx context.Context) (records, bytes uint64, err error)
}

// Memory is a Store in this process's memory. It has no expiry and no
// size bound: what it holds goes with the process.
type Memory struct {
	mu  sync.Mutex
	m   map[string]entry
	rev uint64 // the last revision given out, over all keys as JetStream's
}

type entry struct {
	value []byte
	rev   uint64
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory { return &Memory{m: map[string]entry{}} }

// Create implements Store. It keeps its own copy of value.
func (s *Memory) Create(_ context.Context, key string, value []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; ok {
		return 0, ErrConflict
	}
	return s.putLocked(key, value), nil
}

// Update implements Store. It keeps its own copy of value.
func (s *Memory) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; !ok || e.rev != rev {
		return 0, ErrConflict
	}
	return s.putLocked(key, value), nil
}

func (s *Memory) putLocked(key string, value []byte) uint64 {
	s.rev++
	s.m[key] = entry{value: append([]byte(nil), value...), rev: s.rev}
	return s.rev
}

// WriteBatch implements Batcher. It keeps its own copies of the values.
func (s *Memory) WriteBatch(_ context.Context, ws []Write) ([]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		e, ok := s.m[w.Key]
		if w.Delete && w.Rev == 0 {
			continue
		}
		if (w.Rev == 0 && ok) || (w.Rev != 0 && (!ok || e.rev != w.Rev)) {
			return nil, ErrConflict
		}
	}
	revs := make([]uint64, len(ws))
	for i, w := range ws {
		if w.Delete {
			delete(s.m, w.Key)
			continue
		}
		revs[i] = s.putLocked(w.Key, w.Value)
	}
	return revs, nil
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, key string) ([]byte, uint64, error) {
	s.mu.Lock()
	e, ok := s.m[key]
	s.mu.Unlock()
	if !ok {
		return nil, 0, ErrNotFound
	}
	return append([]byte(nil), e.value...), e.rev, nil
}

// Delete implements Store.
func (s *Memory) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

// Keys implements Store.
func (s *Memory) Keys(_ context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Size implements Sizer: the values' bytes and the keys'.
func (s *Memory) Size(context.Context) (records, bytes uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.m {
		bytes += uint64(len(k) + len(e.value))
	}
	return uint64(len(s.m)), bytes, nil
}

// Len implements Store.
func (s *Memory) Len(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), nil
}
