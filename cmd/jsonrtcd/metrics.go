package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// serveMetrics serves h (the Prometheus metrics) on addr, a listener of
// its own apart from the public one, and with a cluster the node's view
// of it at /cluster/status (admin); "" serves nothing (nil server). A
// non-loopback address is allowed (a scraper on another host) and
// logged, since the metrics then reach whoever reaches that address.
func serveMetrics(addr string, h, status http.Handler, log *slog.Logger) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		log.Warn("metrics served on a non-loopback address: firewall it", "addr", ln.Addr().String())
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	if status != nil {
		mux.Handle("/cluster/status", status)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go srv.Serve(ln)
	return srv, nil
}
