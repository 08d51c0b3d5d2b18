package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Upstream is a NATS cluster the gateway does not run: cluster.nats (the
// gateway is a client of it) or cluster.leaf (the gateway's embedded
// server is a leaf node of it). docs/cluster.md "Configuration".
type Upstream struct {
	// URLs of the cluster's servers (nats://, tls://, or host:port),
	// tried in turn at each connect and reconnect.
	URLs []string `yaml:"urls"`
	// One way to authenticate, or none: a credentials file (JWT and
	// seed, as nsc writes it), a user and password, a token, or an nkey
	// seed file.
	Creds    string `yaml:"creds"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	NKey     string `yaml:"nkey"`
	// TLS toward the servers; the servers' certificates are always
	// verified (there is no option not to).
	TLS TLSConfig `yaml:"tls"`
	// Domain is the JetStream domain of the cluster's JetStream (its
	// servers' jetstream.domain); empty: the default API.
	Domain string `yaml:"domain"`
}

// TLSConfig is TLS toward NATS servers (cluster.nats.tls,
// cluster.leaf.tls) or between the embedded servers' routes
// (cluster.tls).
type TLSConfig struct {
	// CA is the PEM file of the CAs that sign the servers' (the peers')
	// certificates; empty: the system's roots.
	CA string `yaml:"ca"`
	// Cert and Key are this side's certificate and key (PEM): a client
	// certificate toward an upstream, the route certificate of this
	// node for routes (required there).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName is the name the servers' certificates are checked
	// against; empty: the URL's host. Not for routes.
	ServerName string `yaml:"server_name"`
	// Verify asks the route peers for their certificates and checks
	// them against CA (mutual TLS); default true. Routes only.
	Verify *bool `yaml:"verify"`
}

// Enabled reports whether any TLS key is set.
func (t TLSConfig) Enabled() bool {
	return t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "" || t.Verify != nil
}

// Enabled reports whether the upstream is configured.
func (u Upstream) Enabled() bool { return len(u.URLs) > 0 }

// validate reports u's bad keys, each named as cluster.<key>.<name>.
func (u Upstream) validate(key string, bad func(key, format string, args ...any), fail func(error)) {
	if !u.Enabled() {
		if u.Creds != "" || u.User != "" || u.Token != "" || u.NKey != "" || u.TLS.Enabled() || u.Domain != "" {
			bad(key+".urls", "must be set with the other cluster.%s keys", key)
		}
		return
	}
	for i, s := range u.URLs {
		if _, err := ParseURL(s); err != nil {
			bad(fmt.Sprintf("%s.urls[%d]", key, i), "%v", err)
		}
	}
	ways := 0
	for _, set := range []bool{u.Creds != "", u.User != "", u.Token != "", u.NKey != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		bad(key, "set one of creds, user (with password), token, nkey")
	}
	if u.User != "" && u.Password == "" {
		bad(key+".password", "must be set with cluster.%s.user", key)
	}
	if u.Password != "" && u.User == "" {
		bad(key+".user", "must be set with cluster.%s.password", key)
	}
	for _, f := range []struct{ name, path string }{{"creds", u.Creds}, {"nkey", u.NKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			bad(key+"."+f.name, "%v", err)
		}
	}
	if u.Domain != "" && !validName(u.Domain) {
		bad(key+".domain", "%q must be letters, digits, '-' or '_'", u.Domain)
	}
	if u.TLS.Verify != nil {
		bad(key+".tls.verify", "is for cluster.tls (routes); an upstream's certificates are always verified")
	}
	if _, err := u.TLS.load("cluster."+key+".tls", false); err != nil {
		fail(err)
	}
}

// ParseURL reads a server URL: nats://, tls:// or nats-leaf://, or a bare
// host:port.
func ParseURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "nats", "tls", "nats-leaf":
	default:
		return nil, fmt.Errorf("%q: scheme must be nats, tls or nats-leaf", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q: put credentials in their keys, not the URL", s)
	}
	if !validHostPort(u.Host) {
		return nil, fmt.Errorf("%q is not host:port", s)
	}
	return u, nil
}

// ClientTLS is the TLS configuration toward an upstream's servers; nil
// when no TLS key is set (TLS is then used if a URL's scheme is tls or
// the server requires it, with the system's roots).
func (t TLSConfig) ClientTLS() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	return t.load("tls", false)
}

// RouteTLS is the routes' TLS configuration (cluster.tls): nil when no
// key is set.
func (t TLSConfig) RouteTLS() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	return t.load("cluster.tls", true)
}

// load reads the files of t, every error naming key.<name>. For routes
// the configuration serves both ends of a route connection: its
// certificate is the server's and the client's.
func (t TLSConfig) load(key string, route bool) (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	var errs []error
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.ca: %w", key, err))
		} else {
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("%s.ca: %s holds no PEM certificate", key, t.CA))
			}
		}
	}
	switch {
	case route && (t.Cert == "" || t.Key == ""):
		errs = append(errs, fmt.Errorf("%s.cert, %s.key: both required for route TLS", key, key))
	case (t.Cert == "") != (t.Key == ""):
		errs = append(errs, fmt.Errorf("%s.cert, %s.key: set both or neither", key, key))
	case t.Cert != "":
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.cert, %s.key: %w", key, key, err))
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	if route {
		if t.ServerName != "" {
			errs = append(errs, fmt.Errorf("%s.server_name: not for routes (each peer is checked by its address)", key))
		}
		if t.CA == "" {
			errs = append(errs, fmt.Errorf("%s.ca: required for route TLS", key))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if route {
		// The peers' certificates come from the same CA as this node's:
		// a CA that does not sign this node's own is the wrong file, and
		// would fail every route's handshake (at the peers' end too).
		leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
		if err == nil {
			inter := x509.NewCertPool()
			for _, c := range cfg.Certificates[0].Certificate[1:] {
				if ic, err := x509.ParseCertificate(c); err == nil {
					inter.AddCert(ic)
				}
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		}
		if err != nil {
			return nil, fmt.Errorf("%s.ca: does not verify %s.cert %s: %w", key, key, t.Cert, err)
		}
		cfg.ClientCAs = cfg.RootCAs
		if t.Verify == nil || *t.Verify {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}
