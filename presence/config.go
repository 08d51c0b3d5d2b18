package presence

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config is the presence section of the gateway configuration. Zero
// fields take the defaults of DefaultConfig.
type Config struct {
	// Expiry is the subscription lifetime granted, in seconds, when the
	// client asks for none or for more.
	Expiry int `yaml:"expiry"`
	// MinExpiry is the shortest lifetime granted, in seconds: a smaller
	// request is raised to it.
	MinExpiry int `yaml:"min_expiry"`
	// MaxSubscriptions bounds the subscriptions of one session.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxWatchers bounds the subscriptions to one web presentity.
	MaxWatchers int `yaml:"max_watchers"`
	// PendingTimeout, in seconds, bounds the wait for the Upstream to
	// accept or reject a subscription; then the watcher gets 408.
	PendingTimeout int `yaml:"pending_timeout"`
	// PublishWhenWatching: a web identity that watches anyone also has
	// its own state published upstream (PUBLISH), as one that publishes
	// has. Default false: only a `publish` makes the gateway publish.
	PublishWhenWatching bool `yaml:"publish_when_watching"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Expiry: 3600, MinExpiry: 60, MaxSubscriptions: 100, MaxWatchers: 10000, PendingTimeout: 40}
}

// Validate reports every bad field, naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("presence.%s: %s", key, msg)) }
	if c.Expiry < 0 {
		bad("expiry", "must not be negative")
	}
	if c.MinExpiry < 0 {
		bad("min_expiry", "must not be negative")
	}
	d := c.withDefaults()
	if d.MinExpiry > d.Expiry {
		bad("min_expiry", "must not exceed expiry")
	}
	if c.MaxSubscriptions < 0 {
		bad("max_subscriptions", "must not be negative")
	}
	if c.MaxWatchers < 0 {
		bad("max_watchers", "must not be negative")
	}
	if c.PendingTimeout < 0 {
		bad("pending_timeout", "must not be negative")
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Expiry <= 0 {
		c.Expiry = d.Expiry
	}
	if c.MinExpiry <= 0 {
		c.MinExpiry = min(d.MinExpiry, c.Expiry)
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.MaxWatchers <= 0 {
		c.MaxWatchers = d.MaxWatchers
	}
	if c.PendingTimeout <= 0 {
		c.PendingTimeout = d.PendingTimeout
	}
	return c
}

// Options configure a Handler.
type Options struct {
	Config
	// Upstream reaches presentities that are not web users. Nil: none.
	Upstream Upstream
	// Allow decides whether watcher may watch presentity (an
	// authorization policy, RFC 5025's job in SIP); a refusal is 403.
	// Nil allows everyone. It is called with the Handler's lock held and
	// must not block.
	Allow func(watcher, presentity string) bool
	// Local, in a cluster, is told of each change of a local session's
	// share in its identity's state, for the other nodes
	// ([Handler.RemoteSession]); nil when the session ended. It is called
	// with the Handler's lock held, in the order of the changes, and must
	// not block.
	Local  func(identity, session string, r *RemoteSession)
	Logger *slog.Logger
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }
