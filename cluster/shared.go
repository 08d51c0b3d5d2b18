package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Shared is a replicated bucket of values per session, keyed by identity
// and session as the directory is, that every node watches: state of a
// session that the other nodes need as it changes (presence).
type Shared struct {
	kv jetstream.KeyValue
}

// SharedFunc is told of each write to a Shared bucket; value is nil when
// the entry was deleted. It runs on the watch's goroutine, one call at a
// time, in the bucket's order.
type SharedFunc func(identity, session string, value []byte)

// OpenShared opens (creates) the bucket name, whose entries live ttl
// after their last write, and calls fn with what it holds and then with
// every change, until the node closes. Expiry is not a change a watch
// hears of: the writer rewrites its live entries within ttl, and the
// reader forgets entries not written for longer.
func (n *Node) OpenShared(ctx context.Context, name string, ttl time.Duration, fn SharedFunc) (*Shared, error) {
	kv, err := bucket(ctx, n.js, jetstream.KeyValueConfig{Bucket: name, TTL: ttl, History: 1,
		Replicas: n.o.Replicas, Storage: jetstream.MemoryStorage})
	if err != nil {
		return nil, err
	}
	w, err := n.watchAll(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("cluster: watching %s: %w", name, err)
	}
	n.wg.Go(func() {
		n.follow(kv, w, name, func(e jetstream.KeyValueEntry) {
			if e == nil {
				return
			}
			identity, session, ok := splitKey(e.Key())
			if !ok {
				return
			}
			if e.Operation() == jetstream.KeyValuePut {
				fn(identity, session, e.Value())
			} else {
				fn(identity, session, nil)
			}
		})
	})
	return &Shared{kv: kv}, nil
}

// splitKey is dirKey's inverse.
func splitKey(k string) (identity, session string, ok bool) {
	enc, session, ok := strings.Cut(k, ".")
	if !ok {
		return "", "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	return string(b), session, true
}

// Put writes session's value.
func (s *Shared) Put(ctx context.Context, identity, session string, value []byte) error {
	_, err := s.kv.Put(ctx, dirKey(identity, session), value)
	return err
}

// Delete removes session's value: every watcher hears it.
func (s *Shared) Delete(ctx context.Context, identity, session string) error {
	return s.kv.Purge(ctx, dirKey(identity, session))
}
