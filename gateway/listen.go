package gateway

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/jsonrtc/jsonrtc/transport/connlimit"
)

// Guard wraps the public listener ln with the connection caps of the http
// section (transport/connlimit) and adds their counters to the gateway's
// metrics. Wrap it in TLS, if any, afterwards, so that a connection over a
// cap is closed before its TLS handshake. With max_conns 0 the total cap
// is the descriptor limit minus fd_reserve; a configured cap above that
// is an error, as is a limit that leaves no room.
func (g *Gateway) Guard(ln net.Listener) (*connlimit.Listener, error) {
	h := g.cfg.HTTP
	total, err := g.cfg.ConnCap()
	if err != nil {
		return nil, err
	}
	l := connlimit.New(ln, &connlimit.Options{Max: total, MaxPerAddress: h.MaxConnsPerAddress,
		Exempt: g.proxies, Logger: g.log})
	if err := g.metrics.reg.Register(l.Collector()); err != nil {
		return nil, fmt.Errorf("gateway: one guarded listener per gateway: %w", err)
	}
	g.log.Info("connection caps", "max_conns", total, "max_conns_per_address", h.MaxConnsPerAddress)
	return l, nil
}

// HTTPServer returns a server of the gateway's Handler with the timeouts
// of the http section. Serve it on a listener from Guard.
func (g *Gateway) HTTPServer() *http.Server {
	h := g.cfg.HTTP
	return &http.Server{
		Handler:           g.Handler(),
		ReadHeaderTimeout: h.ReadHeaderTimeout.D(),
		ReadTimeout:       h.ReadTimeout.D(),
		WriteTimeout:      h.WriteTimeout.D(),
		IdleTimeout:       h.IdleTimeout.D(),
		ErrorLog:          log.New(&sparseLog{log: g.log}, "", 0),
	}
}

// sparseLog takes net/http's own complaints (TLS handshake errors, accept
// retries, malformed requests). Outsiders trigger them at will, so they
// are logged at the 1st, 2nd, 4th, 8th... occurrence only.
type sparseLog struct {
	log *slog.Logger
	n   atomic.Uint64
}

func (s *sparseLog) Write(p []byte) (int, error) {
	if n := s.n.Add(1); n&(n-1) == 0 {
		s.log.Warn("http server", "err", strings.TrimSpace(string(p)), "occurrences", n)
	}
	return len(p), nil
}

// MetricsHandler serves the Prometheus metrics. jsonrtcd serves it on a
// listener of its own (metrics.listen), never on the public one: a scrape
// walks every metric and is no work to give strangers.
func (g *Gateway) MetricsHandler() http.Handler { return g.metrics.handler() }

// ConnCap returns the total cap on open connections that http.max_conns
// means on this process: the descriptor limit (RLIMIT_NOFILE) minus
// http.fd_reserve when it is 0, the configured cap when that leaves the
// reserve free, -1 for none. jsonrtcd -t checks it.
func (c *Config) ConnCap() (int, error) {
	h := c.HTTP
	if h.MaxConns < 0 {
		return -1, nil
	}
	soft, err := connlimit.DescriptorLimit()
	if err != nil {
		return 0, fmt.Errorf("http.max_conns: %w", err)
	}
	room, err := connlimit.Capacity(soft, h.FDReserve)
	if err != nil {
		return 0, fmt.Errorf("http.max_conns: %w", err)
	}
	switch {
	case h.MaxConns == 0:
		return room, nil
	case h.MaxConns > room:
		return 0, fmt.Errorf("http.max_conns: %d would leave fewer than http.fd_reserve descriptors of the limit of %d; at most %d", h.MaxConns, soft, room)
	}
	return h.MaxConns, nil
}
