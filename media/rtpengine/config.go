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
//	  rtpengine: ["127.0.0.1:2223"]   # ng listeners; one is used for now
//	  policy: auto                    # auto, always, never
//	  timeout: 3s                     # per request, retransmissions included
//	  retransmit: 500ms
//
// An empty rtpengine list leaves media alone (SDP passes unchanged), which
// is the behaviour before this package existed.
type Config struct {
	RTPEngine  []string      `yaml:"rtpengine"`
	Policy     Policy        `yaml:"policy"`
	Timeout    time.Duration `yaml:"timeout"`
	Retransmit time.Duration `yaml:"retransmit"`
}

// WithDefaults fills the unset keys.
func (c Config) WithDefaults() Config {
	if c.Policy == "" {
		c.Policy = PolicyAuto
	}
	o := (&Options{Timeout: c.Timeout, Retransmit: c.Retransmit}).withDefaults()
	c.Timeout, c.Retransmit = o.Timeout, o.Retransmit
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
	if len(c.RTPEngine) > 1 {
		errs = append(errs, fmt.Errorf("media.rtpengine: %d instances given; one is supported until the pool exists", len(c.RTPEngine)))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Retransmit >= c.Timeout {
		errs = append(errs, fmt.Errorf("media.retransmit: %v is not below media.timeout %v", c.Retransmit, c.Timeout))
	}
	return errors.Join(errs...)
}
