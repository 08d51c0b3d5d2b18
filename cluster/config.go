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
		if c.Listen != "" || len(c.Routes) > 0 {
			bad("name", "must be set with cluster.listen or cluster.routes")
		}
		return errors.Join(errs...)
	}
	if !validName(c.Name) {
		bad("name", "%q must be 1 to 64 letters, digits, '-' or '_'", c.Name)
	}
	if !validHostPort(c.Listen) {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if len(c.Routes) == 0 {
		bad("routes", "must list the route addresses of the other nodes")
	}
	for i, r := range c.Routes {
		if !validHostPort(r) {
			bad(fmt.Sprintf("routes[%d]", i), "%q is not host:port", r)
		}
	}
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
