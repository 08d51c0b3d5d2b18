package natsstore

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BindDirectForTest binds s's handle as a node's start does when another
// node's start has turned the bucket's direct gets back on (by creating
// the bucket again) between its own turning them off and its binding,
// and then turns them off again, as that other node does.
func (s *KV) BindDirectForTest(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, "KV_"+s.bucket)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	cfg.AllowDirect = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, s.bucket)
	if err != nil {
		return err
	}
	s.kvp.Store(&kv)
	_, err = leaderReads(ctx, js, s.bucket)
	return err
}
