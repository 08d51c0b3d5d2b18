// Package natsstore keeps store records in a NATS JetStream key-value
// bucket: one value per key, whose revision is the stream sequence of its
// last write, so that Create and Update are compare-and-set as the store
// contract requires. [Start] runs a single-node NATS server inside the
// process, with file storage and no network listener, for a gateway that
// must survive its own restart; [New] opens a bucket over any JetStream
// connection (the cluster's, later).
package natsstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the bucket of session records.
const DefaultBucket = "jsonrtc_sessions"

// Options configure a bucket. A bucket that exists is updated to them.
type Options struct {
	// Bucket names the bucket; default DefaultBucket.
	Bucket string
	// TTL is how long a value lives after its last write (the bucket's
	// max age): nothing the store holds outlives its writer by more.
	// Zero: no expiry.
	TTL time.Duration
	// MaxValueBytes bounds each value; writes over it fail with
	// store.ErrTooLarge. Zero: no bound beyond the server's max payload.
	MaxValueBytes int
	// Memory keeps the bucket in the server's memory rather than on disk.
	Memory bool
	// Replicas is how many servers of a cluster keep the bucket (1 or
	// 3); zero: 1.
	Replicas int
}

// KV is a store.Store on a JetStream key-value bucket.
type KV struct {
	kvp atomic.Pointer[jetstream.KeyValue]
	max int
	// js and bucket rebind a replicated bucket's handle (Get).
	js     jetstream.JetStream
	bucket string
	// batchPre is the prefix of the keys' subjects for atomic batches
	// (batch.go); nil: none.
	batchPre atomic.Pointer[string]
}

func (s *KV) kv() jetstream.KeyValue { return *s.kvp.Load() }

// rebindTimeout bounds binding a bucket's handle again (Get).
const rebindTimeout = 2 * time.Second

var _ store.Store = (*KV)(nil)

// New creates or updates the bucket and returns a store on it (a nil o:
// the defaults).
func New(ctx context.Context, js jetstream.JetStream, opts *Options) (*KV, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.MaxValueBytes < 0 || o.MaxValueBytes > 1<<30 {
		return nil, fmt.Errorf("natsstore: max value size %d out of range", o.MaxValueBytes)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "jsonrtc session records (resume across restarts)",
		TTL:         o.TTL,
		History:     1,
		Storage:     jetstream.FileStorage,
	}
	if o.Replicas > 1 {
		cfg.Replicas = o.Replicas
	}
	if o.MaxValueBytes > 0 {
		// The server counts the key and headers in: the exact bound is
		// check's, the server's a backstop.
		cfg.MaxValueSize = int32(o.MaxValueBytes + 1024)
	}
	if o.Memory {
		cfg.Storage = jetstream.MemoryStorage
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("natsstore: bucket %s: %w", o.Bucket, err)
	}
	if o.Replicas > 1 {
		if kv, err = leaderReads(ctx, js, o.Bucket); err != nil {
			return nil, fmt.Errorf("natsstore: bucket %s: %w", o.Bucket, err)
		}
	}
	st := &KV{max: o.MaxValueBytes}
	if o.Replicas > 1 {
		st.js, st.bucket = js, o.Bucket
		if allowBatches(ctx, js, o.Bucket) {
			pre := batchPrefix(js, o.Bucket)
			st.batchPre.Store(&pre)
		}
	}
	st.kvp.Store(&kv)
	return st, nil
}

// leaderReads turns a replicated bucket's direct gets off: a direct get
// may be answered by a replica a moment behind the last write, and a
// session taken over on another node must be read as its last owner
// wrote it (a stale read refused a resume: its client had frames the
// read state had not sent yet). Reads then go to the stream's leader;
// they are made at resumes and start-ups only.
//
// The handle reads the way the bucket's configuration said as it was
// bound, for good. Nodes started at once each create the bucket again
// (which turns direct gets on) and then turn them off: one node's
// creation between another's turning them off and its bind left that
// node reading from any replica, and a record it had just seen written
// was not found on a follower (natsstore TestRouteTLS, once under load).
// The configuration is therefore read again after the bind, and the
// handle bound again while direct gets are on.
func leaderReads(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	for try := 0; ; try++ {
		st, err := js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return nil, err
		}
		cfg := st.CachedInfo().Config
		if cfg.AllowDirect {
			cfg.AllowDirect = false
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				return nil, err
			}
		}
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			return nil, err
		}
		if st, err = js.Stream(ctx, "KV_"+bucket); err != nil {
			return nil, err
		}
		if !st.CachedInfo().Config.AllowDirect || try >= maxRebinds {
			return kv, nil
		}
	}
}

// maxRebinds bounds leaderReads' binds: each turn is another node's
// start in between, a handful at most.
const maxRebinds = 8

func (s *KV) check(value []byte) error {
	if s.max > 0 && len(value) > s.max {
		return fmt.Errorf("%w: %d bytes, the bound is %d", store.ErrTooLarge, len(value), s.max)
	}
	return nil
}

// conflict maps JetStream's compare-and-set failures to store.ErrConflict.
func conflict(err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164) {
		// 10164: the replicated streams' code for the same (see
		// jetstream.ErrKeyExists).
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	}
	return err
}

// Create implements store.Store.
func (s *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := s.check(value); err != nil {
		return 0, err
	}
	rev, err := s.kv().Create(ctx, key, value)
	return rev, conflict(err)
}

// Update implements store.Store.
func (s *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := s.check(value); err != nil {
		return 0, err
	}
	n, err := s.kv().Update(ctx, key, value, rev)
	return n, conflict(err)
}

// Get implements store.Store.
func (s *KV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv().Get(ctx, key)
	if s.js != nil && (errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded)) {
		// A handle bound while direct gets were on (another node's
		// start creates the bucket again, which turns them back on
		// before it turns them off: leaderReads) sends its reads where
		// nobody answers once they are off, for good: this node's
		// records unreadable, its /readyz 503, every resume here
		// refused or sent away. Bound again, it reads from the leader.
		// (A direct get nobody answers may also wait out its deadline:
		// the handle is bound again on its own bound.)
		bctx, cancel := context.WithTimeout(context.Background(), rebindTimeout)
		kv, rerr := leaderReads(bctx, s.js, s.bucket)
		cancel()
		if rerr == nil {
			s.kvp.Store(&kv)
			if ctx.Err() == nil {
				e, err = kv.Get(ctx, key)
			}
		}
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, store.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

// Delete implements store.Store. The key is purged: no delete marker is
// kept, so deleted sessions cost nothing.
func (s *KV) Delete(ctx context.Context, key string) error {
	return s.kv().Purge(ctx, key)
}

// Keys implements store.Store. It lists the bucket: for a start-up.
func (s *KV) Keys(ctx context.Context, prefix string) ([]string, error) {
	keys, err := s.kv().ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer keys.Stop()
	var out []string
	for k := range keys.Keys() {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Size implements store.Sizer: the bucket's stream state, as its leader
// reports it (a purged key's marker is counted until it ages out).
func (s *KV) Size(ctx context.Context) (records, bytes uint64, err error) {
	st, err := s.kv().Status(ctx)
	if err != nil {
		return 0, 0, err
	}
	return st.Values(), st.Bytes(), nil
}

// Len implements store.Store. It lists the keys: for tests and leak
// checks, not for a hot path.
func (s *KV) Len(ctx context.Context) (int, error) {
	keys, err := s.kv().ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	defer keys.Stop()
	n := 0
	for range keys.Keys() {
		n++
	}
	return n, nil
}
