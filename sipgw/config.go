package sipgw

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Config is the SIP side of the gateway. Zero values take the defaults
// listed on each field: [Config.WithDefaults] fills them in. Whoever reads
// a Config to decide something (gateway.Config does) reads the result of
// WithDefaults, never the raw one: with no registrar key the registrar is
// sip:<domain>, not "none".
type Config struct {
	// Listen holds the local SIP listeners. At least one is required.
	Listen ListenConfig `yaml:"listen"`
	// AdvertisedHost is the host put in Via and Contact. Default: the host
	// of the first listener.
	AdvertisedHost string `yaml:"advertised_host"`
	// Transport is the transport of requests we originate: udp, tcp or tls.
	// Default: udp if listening on UDP, else tcp, else tls.
	Transport string `yaml:"transport"`
	// OutboundProxy, when set, is put as a loose Route on every request
	// outside a dialog (sip:host:port).
	OutboundProxy string `yaml:"outbound_proxy"`
	// Registrar is where REGISTER goes. Default: sip:<Domain>.
	Registrar string `yaml:"registrar"`
	// Balancers are the addresses (IPs or CIDR prefixes) of the SIP load
	// balancers the node sits behind (docs/cluster.md, "SIP
	// deployments"). A new INVITE from one of them addressed to an AOR of
	// our domains (sip:alice@<domain>), not to a binding's Contact, rings
	// that identity's web sessions wherever they are in the cluster: the
	// balancer hands a node requests no binding routes (a service
	// number) and the node holding the session may be another. From any
	// other source such an INVITE is refused 404, as without the key:
	// the Contact user is what keeps the web users unreachable around
	// the registrar.
	Balancers []string `yaml:"balancers"`
	// Domain is the SIP domain of identities given without one, and of
	// the From of anonymous calls. Required.
	Domain string `yaml:"domain"`
	// TelDomain is the host of SIP URIs built from tel: targets and bare
	// phone numbers (the trunk). Default: Domain.
	TelDomain string `yaml:"tel_domain"`
	// IdentityDomains maps a web identity domain to a SIP domain:
	// alice@corp.example -> sip:alice@sip.corp.example. Identities whose
	// domain is not listed keep their domain.
	IdentityDomains map[string]string `yaml:"identity_domains"`
	// RegisterExpiry is the Expires we ask the registrar for. Default 600s.
	RegisterExpiry time.Duration `yaml:"register_expiry"`
	// Credentials are gateway-held digest credentials, by web identity.
	Credentials map[string]Credential `yaml:"credentials"`
	// UserAgent is the User-Agent of our requests and the Server of our
	// responses. Default "jsonrtc/<version>" ([Version]).
	UserAgent string `yaml:"user_agent"`
	// InstanceID is this node's +sip.instance (urn:uuid:...), stable across
	// restarts so the registrar replaces rather than adds our bindings.
	// Default: a random one per process.
	InstanceID string `yaml:"instance_id"`
	// InstanceSecret is the deployment secret from which each web
	// identity's +sip.instance and Contact user derive (instance.go),
	// stable across restarts. At least 16 bytes. Default: the content of
	// InstanceSecretFile, else InstanceID, else a random one per process.
	InstanceSecret string `yaml:"instance_secret"`
	// InstanceSecretFile holds the secret, one line; it is created with
	// a random secret (mode 0600) when it does not exist.
	InstanceSecretFile string `yaml:"instance_secret_file"`
	// Outbound says whether registrations use SIP outbound (RFC 5626):
	// reg-id=1 next to +sip.instance and Supported: outbound on
	// REGISTER; when the registrar's 200 says Require: outbound, CRLF
	// keepalives on the flow and, when one goes unanswered for 10 s, a
	// new REGISTER at once over a new connection (outbound.go). "auto"
	// (the default) is on when transport is tcp or tls, else off; "on"
	// needs transport tcp or tls (the STUN keepalive of UDP is not
	// implemented); "off" sends no reg-id and keeps no flow alive.
	Outbound string `yaml:"outbound"`
	// KeepaliveInterval is the wait between CRLF keepalives when the
	// registrar sends no Flow-Timer. Default: a random 95 to 120 s per
	// keepalive (RFC 5626 section 4.4.1). A Flow-Timer always wins: the
	// registrar drops flows silent for longer.
	KeepaliveInterval time.Duration `yaml:"keepalive_interval"`
	// MaxCalls bounds live calls (both directions). Default 10000.
	MaxCalls int `yaml:"max_calls"`
	// EventQueue is the size of each call's event queue; when it is full
	// the call's owner goroutine waits for the reader. Default 4: a call
	// rarely has more than progress, answered and ended pending, and the
	// queue is allocated (zeroed) for every call.
	EventQueue int `yaml:"event_queue"`
	// T1 is the SIP round-trip estimate of RFC 3261 17.1.1.1, from which
	// every retransmission and transaction timer follows (Timer B = 64*T1).
	// sipgo keeps it process-wide: cmd/jsonrtcd applies it once, with
	// [SetProcessDefaults], before anything starts. Zero keeps sipgo's
	// 500ms.
	T1 time.Duration `yaml:"t1"`
	// UDPMaxDatagram is the largest SIP message sent over UDP, in bytes.
	// Requests over 1300 bytes (an INVITE with a browser's SDP is 3-6 KB)
	// go over TCP when listen.tcp is set (RFC 3261 18.1.1); without it,
	// and for responses, which cannot change transport (18.2.2), they go
	// over UDP as IP fragments, up to this size. Process-wide, like T1
	// ([SetProcessDefaults]). Default 65507, the most IPv4 carries; at
	// least 1300.
	UDPMaxDatagram int `yaml:"udp_max_datagram"`
	// SessionTimers are RFC 4028 session timers (timer.go).
	SessionTimers SessionTimerConfig `yaml:"session_timers"`
}

// ListenConfig lists the listeners. Each address is host:port; port 0
// picks a free port ([UserAgent.Addr] tells which).
type ListenConfig struct {
	UDP     string `yaml:"udp"`
	TCP     string `yaml:"tcp"`
	TLS     string `yaml:"tls"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// Credential is a digest secret held by the gateway for one identity:
// a password, or HA1 = MD5(username:realm:password) with its realm.
type Credential struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	Realm    string `yaml:"realm"`
	HA1      string `yaml:"ha1"`
}

// WithDefaults returns c with every unset field that has a default set
// to it. It is idempotent: New and Validate apply it to what they are
// given, which changes nothing in a Config that already went through it.
func (c Config) WithDefaults() Config {
	if c.AdvertisedHost == "" {
		for _, a := range []string{c.Listen.UDP, c.Listen.TCP, c.Listen.TLS} {
			if h, _, err := net.SplitHostPort(a); err == nil && a != "" {
				c.AdvertisedHost = h
				break
			}
		}
	}
	if c.Transport == "" {
		switch {
		case c.Listen.UDP != "":
			c.Transport = "udp"
		case c.Listen.TCP != "":
			c.Transport = "tcp"
		default:
			c.Transport = "tls"
		}
	}
	c.Transport = strings.ToLower(c.Transport)
	if c.Registrar == "" && c.Domain != "" {
		c.Registrar = "sip:" + c.Domain
	}
	if c.TelDomain == "" {
		c.TelDomain = c.Domain
	}
	if c.RegisterExpiry == 0 {
		c.RegisterExpiry = 600 * time.Second
	}
	if c.UserAgent == "" {
		c.UserAgent = "jsonrtc/" + Version
	}
	if c.Outbound == "" {
		c.Outbound = OutboundAuto
	}
	c.Outbound = strings.ToLower(c.Outbound)
	c.SessionTimers = c.SessionTimers.withDefaults()
	if c.MaxCalls == 0 {
		c.MaxCalls = 10000
	}
	if c.EventQueue == 0 {
		c.EventQueue = 4
	}
	if c.UDPMaxDatagram == 0 {
		c.UDPMaxDatagram = DefaultUDPMaxDatagram
	}
	return c
}

// Validate reports every invalid key, each named by its YAML path.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("sipgw: %s: %s", key, fmt.Sprintf(format, a...)))
	}
	if c.Listen.UDP == "" && c.Listen.TCP == "" && c.Listen.TLS == "" {
		bad("listen", "at least one of udp, tcp, tls is required")
	}
	for key, a := range map[string]string{"listen.udp": c.Listen.UDP, "listen.tcp": c.Listen.TCP, "listen.tls": c.Listen.TLS} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(key, "%v", err)
		}
	}
	if c.Listen.TLS != "" && (c.Listen.TLSCert == "" || c.Listen.TLSKey == "") {
		bad("listen.tls_cert", "tls_cert and tls_key are required with listen.tls")
	}
	switch c.Transport {
	case "udp", "tcp", "tls":
	default:
		bad("transport", "%q is not udp, tcp or tls", c.Transport)
	}
	if (c.Transport == "udp" && c.Listen.UDP == "") || (c.Transport == "tcp" && c.Listen.TCP == "") || (c.Transport == "tls" && c.Listen.TLS == "") {
		bad("transport", "%s needs a listen.%s address", c.Transport, c.Transport)
	}
	if c.Domain == "" {
		bad("domain", "required")
	} else if !validHost(c.Domain) {
		bad("domain", "%q is not a host name", c.Domain)
	}
	if c.TelDomain != "" && !validHost(c.TelDomain) {
		bad("tel_domain", "%q is not a host name", c.TelDomain)
	}
	for k, v := range c.IdentityDomains {
		if !validHost(k) || !validHost(v) {
			bad("identity_domains."+k, "%q -> %q: both must be host names", k, v)
		}
	}
	if c.AdvertisedHost != "" && !validHost(c.AdvertisedHost) {
		bad("advertised_host", "%q is not a host name or address", c.AdvertisedHost)
	}
	for key, u := range map[string]string{"outbound_proxy": c.OutboundProxy, "registrar": c.Registrar} {
		if u == "" {
			continue
		}
		if _, err := parseServerURI(u); err != nil {
			bad(key, "%v", err)
		}
	}
	for i, b := range c.Balancers {
		if _, err := parsePrefix(b); err != nil {
			bad(fmt.Sprintf("balancers[%d]", i), "%v", err)
		}
	}
	if c.RegisterExpiry < 10*time.Second {
		bad("register_expiry", "%v is below 10s", c.RegisterExpiry)
	}
	for id, cr := range c.Credentials {
		key := "credentials." + id
		if cr.Password == "" && cr.HA1 == "" {
			bad(key, "password or ha1 is required")
		}
		if cr.HA1 != "" && cr.Realm == "" {
			bad(key+".realm", "required with ha1")
		}
		if hasCtl(cr.Username) || hasCtl(cr.Realm) {
			bad(key, "control characters")
		}
	}
	if hasCtl(c.UserAgent) {
		bad("user_agent", "control characters")
	}
	if c.InstanceID != "" && (!strings.HasPrefix(c.InstanceID, "urn:") || strings.ContainsAny(c.InstanceID, "\"<>\r\n\x00 ")) {
		bad("instance_id", "%q is not a URN", c.InstanceID)
	}
	switch {
	case c.InstanceSecret != "" && c.InstanceSecretFile != "":
		bad("instance_secret", "set with instance_secret_file: choose one")
	case c.InstanceSecret != "" && len(c.InstanceSecret) < minInstanceSecret:
		bad("instance_secret", "shorter than %d bytes", minInstanceSecret)
	}
	switch c.Outbound {
	case OutboundAuto, OutboundOff:
	case OutboundOn:
		if c.Transport == "udp" {
			bad("outbound", "on needs transport tcp or tls: keepalives over UDP (STUN, RFC 5626 section 4.4.2) are not implemented")
		}
	default:
		bad("outbound", "%q is not auto, on or off", c.Outbound)
	}
	if c.KeepaliveInterval != 0 && (c.KeepaliveInterval < time.Second || c.KeepaliveInterval > time.Hour) {
		bad("keepalive_interval", "%v is not between 1s and 1h", c.KeepaliveInterval)
	}
	if c.MaxCalls < 0 {
		bad("max_calls", "negative")
	}
	if c.T1 != 0 && (c.T1 < 50*time.Millisecond || c.T1 > 10*time.Second) {
		bad("t1", "%v is not between 50ms and 10s", c.T1)
	}
	if c.EventQueue < 1 {
		bad("event_queue", "must be at least 1")
	}
	if c.UDPMaxDatagram < udpRequestMax || c.UDPMaxDatagram > DefaultUDPMaxDatagram {
		bad("udp_max_datagram", "%d is not between %d and %d", c.UDPMaxDatagram, udpRequestMax, DefaultUDPMaxDatagram)
	}
	c.SessionTimers.validate(bad)
	return errors.Join(errs...)
}

// parsePrefix parses an IP address or a CIDR prefix (balancers).
func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%q is not an IP address or a CIDR prefix", s)
	}
	return p.Masked(), nil
}

// parseServerURI parses a registrar or proxy address: a SIP URI without
// user part, or a bare host[:port].
func parseServerURI(s string) (sip.Uri, error) {
	var u sip.Uri
	if hasCtl(s) || strings.ContainsAny(s, " <>\",") {
		return u, fmt.Errorf("%q: invalid characters", s)
	}
	if !strings.HasPrefix(s, "sip:") && !strings.HasPrefix(s, "sips:") {
		s = "sip:" + s
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, fmt.Errorf("%q: %w", s, err)
	}
	if u.Host == "" || !validHost(u.Host) {
		return u, fmt.Errorf("%q: no valid host", s)
	}
	return u, nil
}
