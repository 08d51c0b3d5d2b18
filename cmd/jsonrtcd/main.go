// Command jsonrtcd is the jsonrtc gateway: it terminates JSONrtc sessions
// over WebSocket and relays calls and messages between web users.
//
//	jsonrtcd [-config FILE] [-listen ADDR] [-data DIR] [-insecure-open] [-t]
//	jsonrtcd route [-config FILE] [-app APP] FROM TO
//	jsonrtcd cluster status [-config FILE] [-metrics ADDR] [-json]
//
// With no flags it listens on 127.0.0.1:8080 in open identity mode and
// serves the demo softphone at /. Session records are kept by an embedded
// NATS server (JetStream, on no network port) under ./jsonrtcd-data, so
// that clients resume their sessions across a restart. A configuration file with
// auth.applications turns on authentication (JWT, guest) and limits.
//
// "jsonrtcd route" routes one request with the configuration's routing
// rules and explains the decision, starting nothing (docs/routing.md).
// "jsonrtcd cluster status" prints a running node's view of its cluster
// (docs/cluster.md "Operations").
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/jsonrtc/jsonrtc/transport/certs"
	"github.com/nats-io/nats.go"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "jsonrtcd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "route" {
		return runRoute(args[1:], os.Stdout)
	}
	if len(args) > 0 && args[0] == "cluster" {
		return runClusterStatus(args[1:], os.Stdout)
	}
	fs := flag.NewFlagSet("jsonrtcd", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML configuration `file` (every key optional)")
	listen := fs.String("listen", "", "HTTP listen `address` (overrides the config's listen)")
	insecureOpen := fs.Bool("insecure-open", false, "allow open identity mode on a non-loopback address")
	check := fs.Bool("t", false, "check the configuration and exit")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback `address` (profiling)")
	dataDir := fs.String("data", "", "session store `directory` (overrides the config's store.dir)")
	metricsListen := fs.String("metrics-listen", "", "serve /metrics on this `address` (overrides the config's metrics.listen; \"-\": none)")
	if err := fs.Parse(args); err != nil {
		// -h asked for the usage, which Parse has printed: not a failure.
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	// load reads the configuration and applies the flags over it: at
	// start-up, and again for each SIGHUP (reload.go).
	load := func() (gateway.Config, error) {
		cfg := gateway.DefaultConfig()
		if *configPath != "" {
			var err error
			if cfg, err = gateway.LoadConfig(*configPath); err != nil {
				return cfg, err
			}
		}
		if *listen != "" {
			cfg.Listen = *listen
		}
		switch *metricsListen {
		case "":
		case "-":
			cfg.Metrics.Listen = ""
		default:
			cfg.Metrics.Listen = *metricsListen
		}
		if *dataDir != "" {
			cfg.Store.Dir = *dataDir
		}
		if *insecureOpen {
			cfg.InsecureOpen = true
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Open() && !cfg.Loopback() && !cfg.InsecureOpen {
		return fmt.Errorf("open identity mode lets anyone claim any identity; refusing to listen on %s without -insecure-open (or configure auth.applications)", cfg.Listen)
	}
	if _, err := cfg.ConnCap(); err != nil {
		return err
	}
	if *check {
		fmt.Println("configuration ok")
		return nil
	}
	// Before the page's handler, which gives browsers the public half.
	if err := cfg.Push.LoadVAPIDKeyFile(); err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	if cfg.Open() {
		log.Warn("open identity mode: clients choose their own identity (development only)")
	}

	// sipgo keeps its timers and UDP size limit in package globals: set
	// them once, here, before the SIP side starts.
	sipgw.SetProcessDefaults(cfg.SIP)
	st, node, ready, closeStore, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: after the gateway's Shutdown has
	// written every session's record.
	defer closeStore()
	// The page's TURN credentials come from the gateway, which exists
	// only once New returns; no request is served before.
	var g *gateway.Gateway
	g, err = gateway.New(cfg, &gateway.Options{Logger: log, Web: webHandler(&cfg, func(r *http.Request) (gateway.TURNServer, bool) { return g.TURNFor(r) }), Store: st, Cluster: node, Ready: ready})
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	// The caps go under TLS: a connection over one is closed before its
	// handshake costs anything.
	guarded, err := g.Guard(tcp)
	if err != nil {
		tcp.Close()
		return err
	}
	var ln net.Listener = guarded
	scheme := "http"
	if cfg.TLS.Enabled() {
		r, err := certs.New(cfg.TLS.CertFile, cfg.TLS.KeyFile, &certs.Options{Interval: cfg.TLS.ReloadInterval.D(), Logger: log})
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, r.Config())
		scheme = "https"
	}
	srv := g.HTTPServer()
	log.Info("jsonrtcd listening", "addr", ln.Addr().String(), "demo", scheme+"://"+ln.Addr().String()+"/")
	msrv, err := serveMetrics(cfg.Metrics.Listen, g.MetricsHandler(), g.ClusterStatusHandler(), log)
	if err != nil {
		ln.Close()
		return err
	}

	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reloads := reloadOnHUP(ctx, g, load, *configPath, watchInterval, log)
	defer reloads()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	if node != nil {
		// A node of a cluster drains: its clients resume on the others
		// while the calls it hosts go on (docs/cluster.md, "Drain").
		log.Info("draining", "drain_timeout", cfg.Cluster.DrainTimeout)
		dctx, cancel := context.WithTimeout(context.Background(), cfg.Cluster.DrainTimeout)
		g.Drain(dctx)
		cancel()
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gerr := g.Shutdown(sctx)
	if msrv != nil {
		msrv.Close()
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return gerr
}

func newLogger(c gateway.LogConfig) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

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
