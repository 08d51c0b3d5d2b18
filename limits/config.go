package limits

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Config is the limits section of the gateway's configuration.
//
// A zero field takes its default (see [Config.WithDefaults]); a negative
// count or rate means "unlimited". Each application names one profile
// (auth's `limits` key); an application that names none uses "default",
// which always exists.
type Config struct {
	// MaxKeys caps the number of keys (application/identity pairs,
	// applications, source addresses) tracked by each table. When a
	// table is full, idle keys are evicted first; keys that hold a
	// session are never evicted, and a new key that finds the table full
	// of them is refused (limit "capacity"). Default 100000.
	MaxKeys int `yaml:"max_keys"`
	// Handshakes limits WebSocket handshakes per source address (IPv4
	// /32, IPv6 /64). Default 10 per second, burst 20.
	Handshakes Rate `yaml:"handshakes_per_ip"`
	// Profiles are named sets of limits that applications refer to.
	Profiles map[string]Profile `yaml:"profiles"`
	// Register bounds the SIP REGISTERs that connects cause (see
	// [RegisterConfig]); it applies whatever the applications.
	Register RegisterConfig `yaml:"register"`
}

// Profile is the set of limits of one kind of application.
type Profile struct {
	// Identity limits each identity of an application (all its sessions
	// on this node).
	Identity Quota `yaml:"identity"`
	// Application limits the application as a whole on this node.
	Application Quota `yaml:"application"`
}

// Quota bounds what one identity or one application may hold and do.
type Quota struct {
	Sessions      int  `yaml:"sessions"`      // concurrent sessions
	Calls         int  `yaml:"calls"`         // concurrent calls
	Subscriptions int  `yaml:"subscriptions"` // concurrent presence/voicemail subscriptions
	Frames        Rate `yaml:"frames"`        // client frames (token bucket)
	Messages      Rate `yaml:"messages"`      // instant messages sent (token bucket)
}

// Rate is a token bucket: Rate events per Per, with bursts of up to Burst
// events. A negative Rate means unlimited.
type Rate struct {
	Rate  int           `yaml:"rate"`
	Per   time.Duration `yaml:"per"`
	Burst int           `yaml:"burst"`
}

// DefaultProfile is the name of the profile used by applications that
// name none.
const DefaultProfile = "default"

var (
	defaultIdentity = Quota{
		Sessions:      5,
		Calls:         4,
		Subscriptions: 100,
		Frames:        Rate{Rate: 50, Per: time.Second, Burst: 100},
		Messages:      Rate{Rate: 60, Per: time.Minute, Burst: 20},
	}
	defaultApplication = Quota{
		Sessions:      10000,
		Calls:         5000,
		Subscriptions: 100000,
		Frames:        Rate{Rate: 20000, Per: time.Second, Burst: 40000},
		Messages:      Rate{Rate: 6000, Per: time.Minute, Burst: 1000},
	}
	defaultHandshakes = Rate{Rate: 10, Per: time.Second, Burst: 20}
)

const defaultMaxKeys = 100000

// WithDefaults returns c with every zero field set to its default and the
// "default" profile added when missing.
func (c Config) WithDefaults() Config {
	if c.MaxKeys == 0 {
		c.MaxKeys = defaultMaxKeys
	}
	c.Handshakes = c.Handshakes.withDefaults(defaultHandshakes)
	c.Register = c.Register.withDefaults()
	profiles := make(map[string]Profile, len(c.Profiles)+1)
	for name, p := range c.Profiles {
		profiles[name] = p.withDefaults()
	}
	if _, ok := profiles[DefaultProfile]; !ok {
		profiles[DefaultProfile] = Profile{}.withDefaults()
	}
	c.Profiles = profiles
	return c
}

func (p Profile) withDefaults() Profile {
	p.Identity = p.Identity.withDefaults(defaultIdentity)
	p.Application = p.Application.withDefaults(defaultApplication)
	return p
}

func (q Quota) withDefaults(d Quota) Quota {
	if q.Sessions == 0 {
		q.Sessions = d.Sessions
	}
	if q.Calls == 0 {
		q.Calls = d.Calls
	}
	if q.Subscriptions == 0 {
		q.Subscriptions = d.Subscriptions
	}
	q.Frames = q.Frames.withDefaults(d.Frames)
	q.Messages = q.Messages.withDefaults(d.Messages)
	return q
}

func (r Rate) withDefaults(d Rate) Rate {
	if r.Rate == 0 {
		r.Rate = d.Rate
	}
	if r.Per == 0 {
		r.Per = d.Per
	}
	if r.Burst == 0 {
		// A burst defaults to the profile's burst scaled to the rate,
		// and never below 1.
		r.Burst = max(1, int(int64(d.Burst)*int64(r.Rate)/max(1, int64(d.Rate))))
		if r.Rate < 0 {
			r.Burst = 1
		}
	}
	return r
}

// HasProfile reports whether c (with defaults) has a profile of that name;
// "" names the default profile. The gateway uses it to check that every
// application names an existing profile.
func (c Config) HasProfile(name string) bool {
	if name == "" || name == DefaultProfile {
		return true
	}
	_, ok := c.Profiles[name]
	return ok
}

// Validate reports every invalid setting of c (with defaults applied),
// each naming its key, e.g. "limits.profiles.web.identity.frames.per: must
// be positive".
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("limits.max_keys: must be positive, got %d", c.MaxKeys))
	}
	errs = append(errs, c.Handshakes.validate("limits.handshakes_per_ip")...)
	errs = append(errs, c.Register.validate("limits.register")...)
	names := make([]string, 0, len(c.Profiles))
	for name := range c.Profiles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := c.Profiles[name]
		key := "limits.profiles." + name
		if name == "" {
			errs = append(errs, errors.New("limits.profiles: a profile has an empty name"))
		}
		errs = append(errs, p.Identity.validate(key+".identity")...)
		errs = append(errs, p.Application.validate(key+".application")...)
	}
	return errors.Join(errs...)
}

func (q Quota) validate(key string) []error {
	var errs []error
	errs = append(errs, q.Frames.validate(key+".frames")...)
	errs = append(errs, q.Messages.validate(key+".messages")...)
	return errs
}

func (r Rate) validate(key string) []error {
	if r.Rate < 0 {
		return nil
	}
	var errs []error
	if r.Per <= 0 {
		errs = append(errs, fmt.Errorf("%s.per: must be positive, got %v", key, r.Per))
	} else if r.Per/time.Duration(r.Rate) <= 0 {
		errs = append(errs, fmt.Errorf("%s: %d per %v is finer than one per nanosecond", key, r.Rate, r.Per))
	}
	if r.Burst < 1 {
		errs = append(errs, fmt.Errorf("%s.burst: must be at least 1, got %d", key, r.Burst))
	}
	return errs
}
