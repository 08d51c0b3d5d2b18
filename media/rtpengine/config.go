package rtpengine

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the `media` section of jsonrtcd's configuration:
//
//	media:
//	  rtpengine: ["127.0.0.1:2223", "127.0.0.1:2224"]   # a pool of ng listeners
//	  policy: auto                    # auto, always, never
//	  timeout: 3s                     # per request, retransmissions included
//	  retransmit: 500ms
//	  ping_interval: 2s               # health of each instance
//
// An empty rtpengine list leaves media alone (SDP passes unchanged), which
// is the behaviour before this package existed.
type Config struct {
	RTPEngine  []string      `yaml:"rtpengine"`
	Policy     Policy        `yaml:"policy"`
	Timeout    time.Duration `yaml:"timeout"`
	Retransmit time.Duration `yaml:"retransmit"`
	// PingInterval is how often each instance of the pool is pinged;
	// one that does not answer gets no new calls until it does.
	PingInterval time.Duration `yaml:"ping_interval"`
}

// WithDefaults fills the unset keys.
func (c Config) WithDefaults() Config {
	if c.Policy == "" {
		c.Policy = PolicyAuto
	}
	o := (&Options{Timeout: c.Timeout, Retransmit: c.Retransmit}).withDefaults()
	c.Timeout, c.Retransmit = o.Timeout, o.Retransmit
	if c.PingInterval == 0 {
		c.PingInterval = 2 * time.Second
	}
	return c
}

// Options returns the Client options the config asks for.
func (c Config) Options() *Options {
	c = c.WithDefaults()
	return &Options{Timeout: c.Timeout, Retransmit: c.Retransmit}
}

// Validate reports every invalid key, each named by its YAML path.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	for i, a := range c.RTPEngine {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("media.rtpengine[%d]: %v", i, err))
		}
	}
	seen := map[string]bool{}
	for i, a := range c.RTPEngine {
		if seen[a] {
			errs = append(errs, fmt.Errorf("media.rtpengine[%d]: %s is listed twice", i, a))
		}
		seen[a] = true
	}
	if c.PingInterval < 0 {
		errs = append(errs, fmt.Errorf("media.ping_interval: %v is negative", c.PingInterval))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Retransmit >= c.Timeout {
		errs = append(errs, fmt.Errorf("media.retransmit: %v is not below media.timeout %v", c.Retransmit, c.Timeout))
	}
	return errors.Join(errs...)
}
