package gateway

import (
	"net"
	"time"

	"github.com/jsonrtc/jsonrtc/transport/forwarded"
)

// HTTPConfig configures the public HTTP listener: its timeouts and the
// caps on open connections that keep the process below its descriptor
// limit (package transport/connlimit).
type HTTPConfig struct {
	// ReadHeaderTimeout bounds the wait for a request's headers.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout and WriteTimeout bound reading a whole request and
	// writing its response. A WebSocket is not governed by them: net/http
	// clears a connection's deadlines when it is hijacked.
	ReadTimeout  Duration `yaml:"read_timeout"`
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection that has no request.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConns caps the connections open at once. 0 derives it from the
	// descriptor limit (RLIMIT_NOFILE) minus FDReserve; -1: no cap. A
	// value above the limit minus the reserve fails start-up.
	MaxConns int `yaml:"max_conns"`
	// FDReserve is how many descriptors are kept for everything but HTTP
	// connections (SIP, the store, files). 0: an eighth of the limit,
	// between 64 and 4096.
	FDReserve int `yaml:"fd_reserve"`
	// MaxConnsPerAddress caps the connections open at once from one
	// source address (IPv4 /32, IPv6 /64), on every path. Trusted
	// proxies are exempt. -1: no cap.
	MaxConnsPerAddress int `yaml:"max_conns_per_address"`
	// TrustedProxies are the reverse proxies (CIDR prefixes or addresses)
	// whose X-Forwarded-For and X-Forwarded-Proto are believed. Empty:
	// none.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// MetricsConfig configures the Prometheus listener.
type MetricsConfig struct {
	// Listen is the address /metrics is served on, apart from the public
	// listener; "" serves no metrics.
	Listen string `yaml:"listen"`
}

func defaultHTTP() HTTPConfig {
	return HTTPConfig{
		ReadHeaderTimeout:  Duration(10 * time.Second),
		ReadTimeout:        Duration(30 * time.Second),
		WriteTimeout:       Duration(30 * time.Second),
		IdleTimeout:        Duration(30 * time.Second),
		MaxConnsPerAddress: 256,
	}
}

// defaultMetricsListen is loopback, and not 9090 (Prometheus's own).
const defaultMetricsListen = "127.0.0.1:9464"

func (c *Config) validateHTTP(bad func(key, format string, args ...any)) {
	h := c.HTTP
	for key, d := range map[string]Duration{"http.read_header_timeout": h.ReadHeaderTimeout,
		"http.read_timeout": h.ReadTimeout, "http.write_timeout": h.WriteTimeout, "http.idle_timeout": h.IdleTimeout} {
		if d.D() < time.Second {
			bad(key, "must be at least 1s")
		}
	}
	if h.ReadTimeout < h.ReadHeaderTimeout {
		bad("http.read_timeout", "must be at least http.read_header_timeout")
	}
	if h.MaxConns < -1 {
		bad("http.max_conns", "must be -1 (no cap), 0 (derived from the descriptor limit) or positive")
	}
	if h.FDReserve < 0 {
		bad("http.fd_reserve", "must not be negative")
	}
	if h.MaxConnsPerAddress < -1 || h.MaxConnsPerAddress == 0 {
		bad("http.max_conns_per_address", "must be -1 (no cap) or positive")
	}
	if _, err := forwarded.Parse(h.TrustedProxies); err != nil {
		bad("http.trusted_proxies", "%v", err)
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%q is not host:port", c.Metrics.Listen)
		}
	}
}
