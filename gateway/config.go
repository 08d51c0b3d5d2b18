package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration of a gateway: one YAML file whose
// every key is optional, with unknown keys rejected.
type Config struct {
	// Listen is the HTTP address for WebSocket and the demo page.
	Listen string `yaml:"listen"`
	// InsecureOpen allows open identity mode on a non-loopback address.
	InsecureOpen bool `yaml:"insecure_open"`
	// TLS serves wss:// (and https://) with a certificate that is
	// reloaded when its files change.
	TLS TLSConfig `yaml:"tls"`
	// HTTP configures the public listener: timeouts, connection caps,
	// trusted proxies.
	HTTP HTTPConfig `yaml:"http"`
	// Metrics is the separate listener of /metrics.
	Metrics MetricsConfig `yaml:"metrics"`
	// Domain is the domain of generated guest identities.
	Domain    string          `yaml:"domain"`
	WebSocket WebSocketConfig `yaml:"websocket"`
	LongPoll  LongPollConfig  `yaml:"longpoll"`
	Session   SessionConfig   `yaml:"session"`
	Calls     CallsConfig     `yaml:"calls"`
	Messaging MessagingConfig `yaml:"messaging"`
	// Presence configures the presence server and presence subscriptions.
	Presence presence.Config `yaml:"presence"`
	// MessageNotification configures voicemail (message-summary)
	// subscriptions.
	MessageNotification notification.Config `yaml:"message_notification"`
	// SIP is the SIP side (sipgw); unset (no domain, no listener): none.
	SIP sipgw.Config `yaml:"sip"`
	// Media anchors SIP calls' media in rtpengine (docs/media.md); no
	// rtpengine address: SDP passes unchanged.
	Media rtpengine.Config `yaml:"media"`
	Log   LogConfig        `yaml:"log"`
	// Auth lists the applications and how each authenticates. With none,
	// the gateway runs one built-in open application on every /ws/ path
	// (development only).
	Auth auth.Config `yaml:"auth"`
	// Limits are the service levels the applications refer to. With no
	// applications and no profiles, nothing is limited.
	Limits limits.Config `yaml:"limits"`
	// Store keeps session records, so that clients resume across a
	// restart (docs/protocol.md §4.6). jsonrtcd builds it; a gateway
	// built in code takes Options.Store.
	Store StoreConfig `yaml:"store"`
	// Cluster makes this gateway a node of a cluster of gateways, whose
	// embedded NATS servers join through routes, or which share an
	// external NATS cluster or are its leaf nodes (docs/cluster.md);
	// unset (no name): the gateway runs alone.
	Cluster cluster.Config `yaml:"cluster"`
	// Web configures the demo page (STUN/TURN servers for its browsers).
	Web WebConfig `yaml:"web"`
	// Routing decides where calls, messages and subscriptions go: web
	// relay, a named SIP trunk, or a rejection (docs/routing.md). Unset:
	// the built-in profile.
	Routing routing.Config `yaml:"routing"`
	// Push configures standby and push wake-up (push.go).
	Push PushConfig `yaml:"push"`
	// Templates declare actions of the operator's own: a SIP request or
	// a webhook each (templates.go, docs/routing.md "Templates").
	Templates templates.Config `yaml:"templates"`
}

// StoreConfig configures where session records are kept.
type StoreConfig struct {
	// Backend is nats (default: an embedded NATS server with JetStream
	// file storage under Dir, on no network port) or memory (records
	// go with the process: a restart loses every session).
	Backend string `yaml:"backend"`
	// Dir is the nats backend's data directory; default jsonrtcd-data,
	// relative to the working directory.
	Dir string `yaml:"dir"`
}

// Store backends.
const (
	StoreNATS   = "nats"
	StoreMemory = "memory"
)

// RecordTTL is how long a session record outlives its last write: twice
// the resume timeout. The gateway writes every live record again each
// half resume timeout, so a record is there for at least a resume
// timeout after its gateway died.
func (c Config) RecordTTL() time.Duration { return 2 * c.Session.ResumeTimeout.D() }

// MaxRecordBytes bounds a session record: the retained window (whose
// frames a record holds in base64) with room for its framing.
func (c Config) MaxRecordBytes() int {
	return c.Session.WindowBytes*4/3 + c.Session.WindowFrames*64 + 64<<10
}

// WebSocketConfig configures the WebSocket front.
type WebSocketConfig struct {
	// AllowedOrigins lists Origin host patterns accepted besides the
	// gateway's own host (e.g. "app.example.com", "*.example.com").
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxFrameBytes is the frame size limit; larger frames close 1009.
	MaxFrameBytes int64 `yaml:"max_frame_bytes"`
	// PingInterval is how often WebSocket pings check liveness.
	PingInterval Duration `yaml:"ping_interval"`
	// PingTimeout is how long a pong may take before the socket is
	// declared dead (the session then waits for a resume).
	PingTimeout Duration `yaml:"ping_timeout"`
	// HandshakeTimeout bounds the wait for the first connect frame.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
}

// LongPollConfig configures the HTTP long-poll front at /poll/<app>
// (docs/protocol.md §1.6). Frames are bounded by
// websocket.max_frame_bytes and allowed origins are websocket's.
type LongPollConfig struct {
	// Disabled turns the long-poll front off (404).
	Disabled bool `yaml:"disabled"`
	// Hold is how long a GET is held before an empty 204.
	Hold Duration `yaml:"hold"`
	// IdleTimeout is how long a connection may have no GET held before
	// it counts as a lost socket (the session waits for a resume).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxBatch is the most frames one POST may carry.
	MaxBatch int `yaml:"max_batch"`
}

// TLSConfig names a certificate and key in PEM files.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ReloadInterval is the least time between checks of the files for
	// a renewed certificate. Default 10s.
	ReloadInterval Duration `yaml:"reload_interval"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// SessionConfig configures the reliability machine.
type SessionConfig struct {
	ResumeTimeout Duration `yaml:"resume_timeout"`
	WindowFrames  int      `yaml:"window_frames"`
	WindowBytes   int      `yaml:"window_bytes"`
	// AckDelay is how long the gateway waits for a frame to piggyback an
	// acknowledgement on before it sends a standalone one (jsonrtc
	// clients only).
	AckDelay Duration `yaml:"ack_delay"`
	// MaxSessions bounds the sessions of this gateway.
	MaxSessions int `yaml:"max_sessions"`
}

// CallsConfig configures call relay.
type CallsConfig struct {
	RingTimeout Duration `yaml:"ring_timeout"`
	// SIPHeaders lists the extension headers (case-insensitive names)
	// passed to SIP, and from SIP answers, as headers of the same name.
	// Headers the gateway sets (Via, From, P-Asserted-Identity...: see
	// sipgw.ValidateHeaderName) cannot be listed. Default: none.
	SIPHeaders []string `yaml:"sip_headers"`
}

// MessagingConfig configures message relay.
type MessagingConfig struct {
	ReportTimeout Duration `yaml:"report_timeout"`
	MaxPending    int      `yaml:"max_pending"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 30s, 2m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// DefaultConfig returns the embedded defaults.
func DefaultConfig() Config {
	return Config{
		Listen:  "127.0.0.1:8080",
		Domain:  "guest.invalid",
		HTTP:    defaultHTTP(),
		Metrics: MetricsConfig{Listen: defaultMetricsListen},
		WebSocket: WebSocketConfig{
			MaxFrameBytes:    64 << 10,
			PingInterval:     Duration(20 * time.Second),
			PingTimeout:      Duration(10 * time.Second),
			HandshakeTimeout: Duration(30 * time.Second),
		},
		LongPoll: LongPollConfig{
			Hold:        Duration(25 * time.Second),
			IdleTimeout: Duration(15 * time.Second),
			MaxBatch:    32,
		},
		Session: SessionConfig{
			ResumeTimeout: Duration(60 * time.Second),
			WindowFrames:  1024,
			WindowBytes:   1 << 20,
			AckDelay:      Duration(200 * time.Millisecond),
			MaxSessions:   200000,
		},
		Calls:     CallsConfig{RingTimeout: Duration(60 * time.Second)},
		Messaging: MessagingConfig{ReportTimeout: Duration(90 * time.Second), MaxPending: 100000},
		Log:       LogConfig{Level: "info", Format: "text"},
		Store:     StoreConfig{Backend: StoreNATS, Dir: "jsonrtcd-data"},

		// Zero values: those packages apply their defaults field by
		// field, so that setting one key (say presence.expiry) keeps the
		// others consistent with it.
		Presence:            presence.Config{},
		MessageNotification: notification.Config{},
	}
}

// WithDefaults returns c with the defaults of its sections' packages
// filled in where their keys are unset: the sip section's (a registrar of
// sip:<domain>, the transport of the first listener...). LoadConfig and New
// apply it, so that the gateway decides on the values that run: deciding
// on a raw key (registrar: "" read as "no registration") while sipgw used
// its default once left every README-configured identity unregistered.
// Idempotent.
func (c Config) WithDefaults() Config {
	if c.sipConfigured() {
		c.SIP = c.SIP.WithDefaults()
	}
	c.Media = c.Media.WithDefaults()
	c.Web.TURN = c.Web.TURN.withDefaults()
	c.Cluster = c.Cluster.WithDefaults()
	return c
}

// LoadConfig reads path over the defaults, with [Config.WithDefaults]
// applied. Unknown keys and bad values
// fail with a message that names the key.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Validate reports every bad value, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if c.TLS.Enabled() && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	if c.Domain == "" {
		bad("domain", "must not be empty")
	}
	c.validateHTTP(bad)
	c.validatePush(bad)
	if c.WebSocket.MaxFrameBytes < 1024 || c.WebSocket.MaxFrameBytes > 16<<20 {
		bad("websocket.max_frame_bytes", "must be between 1024 and 16777216")
	}
	if c.WebSocket.PingInterval.D() < time.Second {
		bad("websocket.ping_interval", "must be at least 1s")
	}
	if c.WebSocket.PingTimeout.D() < 100*time.Millisecond || c.WebSocket.PingTimeout > c.WebSocket.PingInterval {
		bad("websocket.ping_timeout", "must be between 100ms and websocket.ping_interval")
	}
	if c.LongPoll.Hold.D() < time.Second {
		bad("longpoll.hold", "must be at least 1s")
	} else if !c.LongPoll.Disabled && (c.LongPoll.Hold >= c.HTTP.ReadTimeout || c.LongPoll.Hold >= c.HTTP.WriteTimeout) {
		// net/http cuts a held GET at either deadline.
		bad("longpoll.hold", "must be under http.read_timeout and http.write_timeout (or set longpoll.disabled)")
	}
	if c.LongPoll.IdleTimeout.D() < time.Second {
		bad("longpoll.idle_timeout", "must be at least 1s")
	}
	if c.LongPoll.MaxBatch < 1 || c.LongPoll.MaxBatch > 1024 {
		bad("longpoll.max_batch", "must be between 1 and 1024")
	}
	if c.WebSocket.HandshakeTimeout.D() < time.Second {
		bad("websocket.handshake_timeout", "must be at least 1s")
	}
	if c.Session.ResumeTimeout.D() < time.Second {
		bad("session.resume_timeout", "must be at least 1s")
	}
	if c.Session.WindowFrames < 16 {
		bad("session.window_frames", "must be at least 16")
	}
	if c.Session.WindowBytes < 64<<10 {
		bad("session.window_bytes", "must be at least 65536")
	}
	if c.Session.AckDelay.D() <= 0 {
		bad("session.ack_delay", "must be positive")
	}
	if c.Session.MaxSessions < 1 {
		bad("session.max_sessions", "must be at least 1")
	}
	if c.Calls.RingTimeout.D() < time.Second {
		bad("calls.ring_timeout", "must be at least 1s")
	}
	for i, name := range c.Calls.SIPHeaders {
		// The gateway alone sets the headers that route, authenticate
		// or assert identity: a client listed here could spoof them.
		var he *sipgw.HeaderError
		if errors.As(sipgw.ValidateHeaderName(name), &he) {
			bad(fmt.Sprintf("calls.sip_headers[%d]", i), "%q %s", he.Name, he.Problem)
		}
	}
	if c.Messaging.ReportTimeout.D() < time.Second {
		bad("messaging.report_timeout", "must be at least 1s")
	}
	if c.Messaging.MaxPending < 1 {
		bad("messaging.max_pending", "must be at least 1")
	}
	switch c.Store.Backend {
	case StoreNATS:
		if c.Store.Dir == "" {
			bad("store.dir", "must not be empty with store.backend nats")
		}
	case StoreMemory:
	default:
		bad("store.backend", "%q is not one of nats, memory", c.Store.Backend)
	}
	if err := c.Cluster.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Cluster.Enabled() && c.Store.Backend != StoreNATS {
		bad("store.backend", "must be nats with a cluster section")
	}
	c.Web.validate(bad)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if err := c.Presence.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.MessageNotification.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.sipConfigured() {
		if err := c.SIP.Validate(); err != nil {
			errs = append(errs, err)
		}
	} else if len(c.Media.RTPEngine) > 0 {
		bad("media.rtpengine", "needs the sip section: only SIP calls go through rtpengine")
	}
	if err := c.Media.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Auth.Applications) > 0 {
		if err := c.Auth.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Routing.Validate(); err != nil {
		errs = append(errs, err)
	}
	for i, h := range c.Routing.Headers {
		if h.Param != "" {
			continue // a Request-URI parameter: routing checks its name
		}
		// As for calls.sip_headers: never a header the gateway sets.
		var he *sipgw.HeaderError
		if errors.As(sipgw.ValidateHeaderName(h.Header), &he) {
			bad(fmt.Sprintf("routing.headers[%d].header", i), "%q %s", he.Name, he.Problem)
		}
	}
	if err := c.Templates.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Routing.Trunks) > 0 && !c.sipConfigured() {
		bad("routing.trunks", "trunks need the sip section")
	}
	lim := c.Limits.WithDefaults()
	if err := lim.Validate(); err != nil {
		errs = append(errs, err)
	}
	for i, a := range c.Auth.Applications {
		if !lim.HasProfile(a.Limits) {
			bad(fmt.Sprintf("auth.applications[%d].limits", i), "no limits profile %q", a.Limits)
		}
	}
	return errors.Join(errs...)
}

// Open reports whether some application lets clients choose their own
// identity: the built-in one, or a configured one in open mode.
func (c *Config) Open() bool {
	if len(c.Auth.Applications) == 0 {
		return true
	}
	for _, a := range c.Auth.Applications {
		if a.Mode == auth.ModeOpen && !a.Disabled {
			return true
		}
	}
	return false
}

// limitsConfig is the limits in force: with no applications and no
// profiles (the built-in development application), nothing is limited.
func (c *Config) limitsConfig() limits.Config {
	l := c.Limits
	if len(c.Auth.Applications) == 0 && len(l.Profiles) == 0 {
		unlimited := limits.Rate{Rate: -1}
		q := limits.Quota{Sessions: -1, Calls: -1, Subscriptions: -1, Frames: unlimited, Messages: unlimited}
		l.Profiles = map[string]limits.Profile{limits.DefaultProfile: {Identity: q, Application: q}}
		if l.Handshakes == (limits.Rate{}) {
			l.Handshakes = unlimited
		}
	}
	return l.WithDefaults()
}

// Loopback reports whether the listen address is a loopback one.
func (c *Config) Loopback() bool {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
