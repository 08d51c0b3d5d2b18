package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/nats-io/nats.go"
)

// openStore starts the configured session store, and with a cluster
// section the node's place in the cluster. The memory backend gives the
// gateway none of its own: records then go with the process.
func openStore(cfg gateway.Config, log *slog.Logger) (store.Store, *cluster.Node, func(context.Context) error, func(), error) {
	if cfg.Store.Backend == gateway.StoreMemory {
		return nil, nil, nil, func() {}, nil
	}
	cl := cfg.Cluster
	so := natsstore.Options{TTL: cfg.RecordTTL(), MaxValueBytes: cfg.MaxRecordBytes()}
	wait := 30 * time.Second
	if cl.Enabled() {
		so.Replicas = cl.Replicas
		wait += cl.ReadyTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := startNATS(ctx, cfg, so, log)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if !cl.Enabled() {
		log.Info("session store", "backend", "nats", "dir", cfg.Store.Dir)
		return s, nil, s.Ready, s.Close, nil
	}
	co := cluster.Options{Name: cl.Name, Replicas: cl.Replicas, LeaseTTL: cl.LeaseTTL, DirectoryTTL: cfg.RecordTTL(), Logger: log}
	switch cl.Mode() {
	case cluster.ModeNATS:
		co.Upstream, co.Domain = true, cl.NATS.Domain
	case cluster.ModeLeaf:
		co.Upstream, co.Domain = true, cl.Leaf.Domain
	}
	node, err := cluster.Start(ctx, s.Conn(), co)
	if err != nil {
		s.Close()
		return nil, nil, nil, nil, fmt.Errorf("cluster: %w", err)
	}
	log.Info("session store", "backend", "nats", "cluster_mode", modeNames[cl.Mode()], "cluster_node", cl.Name, "replicas", cl.Replicas)
	return s, node, s.Ready, func() { node.Close(); s.Close() }, nil
}

var modeNames = map[cluster.Mode]string{cluster.ModeRoutes: "routes", cluster.ModeNATS: "external", cluster.ModeLeaf: "leaf"}

// natsStore is the store on NATS: an embedded server's or an external
// cluster's.
type natsStore interface {
	store.Store
	Conn() *nats.Conn
	Ready(context.Context) error
	Close()
}

// startNATS starts the embedded server (alone, joined by routes, or a
// leaf node) or connects to the external cluster, and opens the bucket.
func startNATS(ctx context.Context, cfg gateway.Config, so natsstore.Options, log *slog.Logger) (natsStore, error) {
	cl := cfg.Cluster
	if cl.Enabled() && cl.Mode() == cluster.ModeNATS {
		u := cl.NATS
		t, err := u.TLS.ClientTLS()
		if err != nil {
			return nil, err
		}
		c, err := natsstore.Dial(ctx, &natsstore.DialOptions{URLs: u.URLs, Name: "jsonrtcd " + cl.Name,
			Creds: u.Creds, NKeyFile: u.NKey, User: u.User, Password: u.Password, Token: u.Token,
			TLS: t, Domain: u.Domain, Store: so, ReadyTimeout: cl.ReadyTimeout, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("cluster.nats: %w", err)
		}
		return c, nil
	}
	if err := os.MkdirAll(cfg.Store.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store.dir: %w", err)
	}
	o := natsstore.EmbeddedOptions{Dir: cfg.Store.Dir, Logger: log, Store: so, ReadyTimeout: cl.ReadyTimeout}
	if cl.Enabled() {
		var err error
		switch cl.Mode() {
		case cluster.ModeRoutes:
			o.Cluster = &natsstore.ClusterOptions{Name: cl.Name, Listen: cl.Listen, Routes: cl.Routes, User: cl.User, Password: cl.Password}
			o.Cluster.TLS, err = cl.TLS.RouteTLS()
		case cluster.ModeLeaf:
			o.Leaf, err = leafOptions(cl)
		}
		if err != nil {
			return nil, err
		}
	}
	e, err := natsstore.Start(ctx, &o)
	if err != nil {
		return nil, fmt.Errorf("store.dir %s: %w", cfg.Store.Dir, err)
	}
	return e, nil
}

// leafOptions reads cluster.leaf's files.
func leafOptions(cl cluster.Config) (*natsstore.LeafOptions, error) {
	u := cl.Leaf
	l := &natsstore.LeafOptions{Name: cl.Name, Creds: u.Creds, User: u.User, Password: u.Password, Token: u.Token, Domain: u.Domain}
	for _, s := range u.URLs {
		p, err := cluster.ParseURL(s)
		if err != nil {
			return nil, fmt.Errorf("cluster.leaf.urls: %w", err)
		}
		l.URLs = append(l.URLs, p)
	}
	if u.NKey != "" {
		seed, err := os.ReadFile(u.NKey)
		if err != nil {
			return nil, fmt.Errorf("cluster.leaf.nkey: %w", err)
		}
		l.NKeySeed = strings.TrimSpace(string(seed))
	}
	var err error
	l.TLS, err = u.TLS.ClientTLS()
	return l, err
}
