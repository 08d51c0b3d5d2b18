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
	"syscall"
	"time"

	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/transport/certs"
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
