package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the cluster section of jsonrtcd's configuration
// (docs/cluster.md). Without a name the gateway runs alone.
type Config struct {
	// Name is this node's name, unique in the cluster: letters, digits,
	// '-' and '_' (it is a NATS subject token and JetStream peer name).
	Name string `yaml:"name"`
	// Listen is the route listener of the embedded NATS server,
	// host:port; the peers' routes name it.
	Listen string `yaml:"listen"`
	// Routes are the route addresses of the cluster's nodes (this one's
	// may be listed too: every node can share one list).
	Routes []string `yaml:"routes"`
	// TLS secures the routes (mode 1): every node's certificate, signed
	// by CA, and the peers' checked against it.
	TLS TLSConfig `yaml:"tls"`
	// User and Password authenticate the routes (mode 1): each node
	// accepts routes with them and offers them on its own (NATS routes
	// take no token).
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// NATS is an external NATS cluster (mode 2): the gateway runs no
	// NATS server and keeps its buckets in that cluster's JetStream.
	NATS Upstream `yaml:"nats"`
	// Leaf makes the embedded server a leaf node of a central cluster
	// (mode 3), whose JetStream keeps the buckets.
	Leaf Upstream `yaml:"leaf"`
	// Replicas is how many nodes keep each bucket: 1 or 3. Default 3.
	Replicas int `yaml:"replicas"`
	// LeaseTTL is how long a node stays alive in its peers' eyes after
	// its last lease refresh (refreshed every third of it). Default 6s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// ReadyTimeout bounds the wait at start-up for JetStream (a quorum
	// of the nodes). Default 60s.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// DrainTimeout bounds how long a draining node (SIGTERM) keeps
	// running for the calls it hosts. Default 2m.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Enabled reports whether the section makes a cluster.
func (c Config) Enabled() bool { return c.Name != "" }

// WithDefaults fills in the unset keys of an enabled section.
func (c Config) WithDefaults() Config {
	if !c.Enabled() {
		return c
	}
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 6 * time.Second
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 2 * time.Minute
	}
	return c
}

// Validate reports every bad key of an enabled section (defaults
// applied), each named as cluster.<key>.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster.%s: "+format, append([]any{key}, args...)...))
	}
	if !c.Enabled() {
		if c.Listen != "" || len(c.Routes) > 0 || c.NATS.Enabled() || c.Leaf.Enabled() {
			bad("name", "must be set with cluster.listen, cluster.routes, cluster.nats or cluster.leaf")
		}
		return errors.Join(errs...)
	}
	if !validName(c.Name) {
		bad("name", "%q must be 1 to 64 letters, digits, '-' or '_'", c.Name)
	}
	routed, routeKey := c.Listen != "" || len(c.Routes) > 0, "routes"
	if len(c.Routes) == 0 {
		routeKey = "listen"
	}
	switch {
	case routed && c.NATS.Enabled():
		bad(routeKey, "cannot be set with cluster.nats.urls: embedded servers joined by routes, or an external NATS cluster, not both")
	case routed && c.Leaf.Enabled():
		bad(routeKey, "cannot be set with cluster.leaf.urls: embedded servers joined by routes, or leaf nodes of a central cluster, not both")
	case c.NATS.Enabled() && c.Leaf.Enabled():
		bad("nats.urls", "cannot be set with cluster.leaf.urls: a client of an external cluster, or a leaf node of one, not both")
	case c.NATS.Enabled() || c.Leaf.Enabled():
		if c.TLS.Enabled() || c.User != "" || c.Password != "" {
			bad("tls", "cluster.tls, cluster.user and cluster.password are for routes; an upstream's are under cluster.nats or cluster.leaf")
		}
	default:
		c.validateRoutes(bad, func(err error) { errs = append(errs, err) })
	}
	c.NATS.validate("nats", bad, func(err error) { errs = append(errs, err) })
	c.Leaf.validate("leaf", bad, func(err error) { errs = append(errs, err) })
	if c.Replicas != 1 && c.Replicas != 3 {
		bad("replicas", "%d is not 1 or 3", c.Replicas)
	}
	if c.LeaseTTL < time.Second {
		bad("lease_ttl", "must be at least 1s")
	}
	if c.ReadyTimeout < time.Second {
		bad("ready_timeout", "must be at least 1s")
	}
	if c.DrainTimeout < 0 {
		bad("drain_timeout", "must not be negative")
	}
	return errors.Join(errs...)
}

// validateRoutes checks mode 1's keys.
func (c Config) validateRoutes(bad func(key, format string, args ...any), fail func(error)) {
	if !validHostPort(c.Listen) {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if len(c.Routes) == 0 {
		bad("routes", "must list the route addresses of the other nodes (or set cluster.nats or cluster.leaf)")
	}
	for i, r := range c.Routes {
		if !validHostPort(r) {
			bad(fmt.Sprintf("routes[%d]", i), "%q is not host:port", r)
		}
	}
	if (c.User == "") != (c.Password == "") {
		bad("user", "cluster.user and cluster.password go together")
	}
	if _, err := c.TLS.RouteTLS(); err != nil {
		fail(err)
	}
}

// Mode is how the nodes meet.
type Mode int

// Modes of a cluster (docs/cluster.md "Configuration").
const (
	ModeRoutes Mode = iota // embedded servers joined by routes
	ModeNATS               // an external NATS cluster, by URLs
	ModeLeaf               // embedded leaf nodes of a central cluster
)

// Mode reports how the nodes meet.
func (c Config) Mode() Mode {
	switch {
	case c.NATS.Enabled():
		return ModeNATS
	case c.Leaf.Enabled():
		return ModeLeaf
	}
	return ModeRoutes
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return false
	}
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 1 || n > 65535 {
		return false
	}
	return true
}
