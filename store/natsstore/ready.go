package natsstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jsonrtc/jsonrtc/store"
	"github.com/nats-io/nats.go"
)

// readyKey is read by Ready; no record has it (session ids are base64).
const readyKey = "readyz"

// Ready reports why the store cannot take a session now, or nil: the
// in-process connection must be up and the bucket's leader must answer
// a read (a clustered JetStream without a quorum, its peers gone, does
// not). It asks for no write: a probe every few seconds costs the
// cluster nothing.
//
// A leaf node (EmbeddedOptions.Leaf) must also have its connection to the
// hub up: the buckets are the hub's.
func (e *Embedded) Ready(ctx context.Context) error {
	if e.leaf && e.srv.NumLeafNodes() == 0 {
		return errNoLeaf
	}
	if !e.leaf && !e.caughtUp.Load() {
		// What NATS's own start-up probe asks: after a restart the
		// server catches up on every stream for seconds, and the next
		// node of a rolling restart stopped meanwhile left the streams
		// without a quorum (cluster.Node.Short). Asked until it first
		// passes only: a follower a few entries behind under load is
		// not current at every instant, and readiness must not flap.
		if h := e.srv.Healthz(nil); h.Error != "" {
			return fmt.Errorf("jetstream catching up after start: %s", h.Error)
		}
		e.caughtUp.Store(true)
	}
	err := ready(ctx, e.nc, e.KV)
	if err != nil && e.leaf && e.srv.NumLeafNodes() == 0 {
		// The hub went while the read waited for it: the read fails on
		// its deadline, but the cause is the leaf connection, which
		// this server saw close only after the probe began.
		return errNoLeaf
	}
	return err
}

var errNoLeaf = errors.New("nats: no leaf connection to the hub (cluster.leaf.urls)")

func ready(ctx context.Context, nc *nats.Conn, kv *KV) error {
	if s := nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats: connection %s", s)
	}
	if _, _, err := kv.Get(ctx, readyKey); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}
