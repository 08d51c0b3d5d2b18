package limits

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// A table maps keys to entries, in shards so that concurrent sessions
// rarely share a lock. Lookups take a shard's read lock; only creating and
// evicting entries take its write lock.
//
// Entry state is atomics, changed under the shard's read lock when the
// entry is found by key, or without a lock through a Session that pins the
// entry (an entry with a session is never evicted). Eviction happens under
// the write lock and only takes entries that hold nothing, so a count can
// never be added to an entry that is being removed.
type table struct {
	seed     maphash.Seed
	perShard int
	shards   [numShards]shard
}

const numShards = 64

// sampleSize is how many entries an eviction under pressure looks at: like
// Redis's sampled LRU, it evicts the least recently used of a few random
// entries rather than scanning the shard.
const sampleSize = 8

type shard struct {
	mu        sync.RWMutex
	m         map[string]*entry
	lastSweep int64 // clock reading of the last full sweep; under mu
	_         [40]byte
}

// entry is the state of one key. Rates are GCRA "theoretical arrival
// times" (a token bucket in one word); counts are concurrent holdings.
type entry struct {
	frames, messages atomic.Int64 // GCRA TAT, clock nanoseconds
	sessions         atomic.Int64
	calls            atomic.Int64
	subscriptions    atomic.Int64
	lastUsed         atomic.Int64
}

func newTable(maxKeys int) *table {
	t := &table{seed: maphash.MakeSeed(), perShard: max(1, (maxKeys+numShards-1)/numShards)}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*entry)
	}
	return t
}

func (t *table) shard(key string) *shard {
	return &t.shards[maphash.String(t.seed, key)%numShards]
}

// idle reports whether e can be removed without changing any decision: it
// holds nothing and its buckets are full again.
func (e *entry) idle(now int64) bool {
	return e.sessions.Load() == 0 && e.calls.Load() == 0 && e.subscriptions.Load() == 0 &&
		e.frames.Load() <= now && e.messages.Load() <= now
}

// with runs f on the entry of key, creating it when missing, under the
// shard's read lock. It returns false when the key is new and its shard is
// full of entries that cannot be evicted.
func (t *table) with(key string, now int64, f func(*entry)) bool {
	s := t.shard(key)
	s.mu.RLock()
	if e, ok := s.m[key]; ok {
		e.lastUsed.Store(now)
		f(e)
		s.mu.RUnlock()
		return true
	}
	s.mu.RUnlock()

	s.mu.Lock()
	e, ok := s.m[key]
	if !ok {
		if len(s.m) >= t.perShard && !s.makeRoom(now, t.perShard) {
			s.mu.Unlock()
			return false
		}
		e = new(entry)
		s.m[key] = e
	}
	e.lastUsed.Store(now)
	// f only touches atomics; holding the write lock instead of the read
	// lock here is equally safe.
	f(e)
	s.mu.Unlock()
	return true
}

// makeRoom frees at least one slot of a full shard; s.mu is held. It first
// drops every idle entry (at most once per second of clock time, so a
// flood of new keys cannot make each insertion a full scan), then evicts
// the least recently used of a sample of entries that hold no counts: that
// loses only rate state, which errs toward the newcomer.
func (s *shard) makeRoom(now int64, perShard int) bool {
	if s.lastSweep == 0 || now-s.lastSweep >= int64(time.Second) {
		s.lastSweep = now
		for k, e := range s.m {
			if e.idle(now) {
				delete(s.m, k)
			}
		}
		if len(s.m) < perShard {
			return true
		}
	}
	var victim string
	var oldest int64
	found, seen := false, 0
	for k, e := range s.m {
		if seen == sampleSize {
			break
		}
		if e.sessions.Load() != 0 || e.calls.Load() != 0 || e.subscriptions.Load() != 0 {
			continue
		}
		seen++
		if lu := e.lastUsed.Load(); !found || lu < oldest {
			victim, oldest, found = k, lu, true
		}
	}
	if found {
		delete(s.m, victim)
		return true
	}
	return false
}

// len returns the number of tracked keys.
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// gcra takes one event from the bucket whose theoretical arrival time is
// tat. interval is the time one token takes to refill and tolerance is
// interval*(burst-1). It never blocks: a lost race retries.
func gcra(tat *atomic.Int64, now, interval, tolerance int64) bool {
	for {
		old := tat.Load()
		t := max(old, now)
		if t-now > tolerance {
			return false
		}
		if tat.CompareAndSwap(old, t+interval) {
			return true
		}
	}
}

// acquire adds one to c unless that would exceed limit (negative: no
// limit).
func acquire(c *atomic.Int64, limit int64) bool {
	if limit < 0 {
		c.Add(1)
		return true
	}
	for {
		v := c.Load()
		if v >= limit {
			return false
		}
		if c.CompareAndSwap(v, v+1) {
			return true
		}
	}
}
