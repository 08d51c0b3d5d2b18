package cluster_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/internal/natstest"
)

// TestUpstreamConfigErrors: each bad key of the external, leaf and route
// TLS configuration fails Validate, named.
func TestUpstreamConfigErrors(t *testing.T) {
	pki := natstest.NewPKI(t)
	other := natstest.NewPKI(t)
	notPEM := filepath.Join(t.TempDir(), "x.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(mod func(c *cluster.Config)) cluster.Config {
		c := cluster.Config{Name: "n1"}
		mod(&c)
		return c.WithDefaults()
	}
	routes := func(c *cluster.Config) { c.Listen, c.Routes = "127.0.0.1:6222", []string{"127.0.0.1:6222"} }
	ext := func(c *cluster.Config) { c.NATS.URLs = []string{"tls://127.0.0.1:4222"} }
	for _, c := range []struct {
		name string
		cfg  cluster.Config
		want []string
	}{
		{"routes and nats", base(func(c *cluster.Config) { routes(c); ext(c) }), []string{"cluster.routes", "cluster.nats.urls"}},
		{"routes and leaf", base(func(c *cluster.Config) { routes(c); c.Leaf.URLs = []string{"127.0.0.1:7422"} }), []string{"cluster.routes", "cluster.leaf.urls"}},
		{"listen and nats", base(func(c *cluster.Config) { c.Listen = "127.0.0.1:6222"; ext(c) }), []string{"cluster.listen: cannot be set with cluster.nats.urls"}},
		{"nats and leaf", base(func(c *cluster.Config) { ext(c); c.Leaf.URLs = []string{"127.0.0.1:7422"} }), []string{"cluster.nats.urls", "cluster.leaf.urls"}},
		{"no name", cluster.Config{NATS: cluster.Upstream{URLs: []string{"127.0.0.1:4222"}}}, []string{"cluster.name: must be set"}},
		{"url", base(func(c *cluster.Config) { c.NATS.URLs = []string{"127.0.0.1:4222", "http://x:1"} }), []string{"cluster.nats.urls[1]"}},
		{"url credentials", base(func(c *cluster.Config) { c.NATS.URLs = []string{"nats://u:p@127.0.0.1:4222"} }), []string{"cluster.nats.urls[0]", "not the URL"}},
		{"user alone", base(func(c *cluster.Config) { ext(c); c.NATS.User = "gw" }), []string{"cluster.nats.password"}},
		{"two ways", base(func(c *cluster.Config) { ext(c); c.NATS.Token = "t"; c.NATS.User, c.NATS.Password = "u", "p" }), []string{"cluster.nats: set one of"}},
		{"creds missing", base(func(c *cluster.Config) { ext(c); c.NATS.Creds = "/nonexistent/x.creds" }), []string{"cluster.nats.creds"}},
		{"nkey missing", base(func(c *cluster.Config) { c.Leaf.URLs = []string{"127.0.0.1:7422"}; c.Leaf.NKey = "/nonexistent/seed" }), []string{"cluster.leaf.nkey"}},
		{"ca not pem", base(func(c *cluster.Config) { ext(c); c.NATS.TLS.CA = notPEM }), []string{"cluster.nats.tls.ca"}},
		{"cert without key", base(func(c *cluster.Config) { ext(c); c.NATS.TLS.Cert = pki.Cert }), []string{"cluster.nats.tls.cert, cluster.nats.tls.key"}},
		{"no verify option", base(func(c *cluster.Config) { ext(c); f := false; c.NATS.TLS.Verify = &f }), []string{"cluster.nats.tls.verify"}},
		{"domain", base(func(c *cluster.Config) { c.Leaf.URLs = []string{"127.0.0.1:7422"}; c.Leaf.Domain = "a.b" }), []string{"cluster.leaf.domain"}},
		{"keys without urls", base(func(c *cluster.Config) { routes(c); c.Leaf.Token = "t" }), []string{"cluster.leaf.urls: must be set"}},
		{"route keys upstream", base(func(c *cluster.Config) { ext(c); c.User, c.Password = "r", "p" }), []string{"cluster.tls"}},
		{"route user alone", base(func(c *cluster.Config) { routes(c); c.User = "r" }), []string{"cluster.user"}},
		{"route tls no ca", base(func(c *cluster.Config) { routes(c); c.TLS = cluster.TLSConfig{Cert: pki.Cert, Key: pki.Key} }), []string{"cluster.tls.ca: required"}},
		{"route tls no cert", base(func(c *cluster.Config) { routes(c); c.TLS = cluster.TLSConfig{CA: pki.CA} }), []string{"cluster.tls.cert, cluster.tls.key: both required"}},
		{"route tls wrong ca", base(func(c *cluster.Config) {
			routes(c)
			c.TLS = cluster.TLSConfig{CA: other.CA, Cert: pki.Cert, Key: pki.Key}
		}), []string{"cluster.tls.ca: does not verify", "unknown authority"}},
		{"route tls server name", base(func(c *cluster.Config) {
			routes(c)
			c.TLS = cluster.TLSConfig{CA: pki.CA, Cert: pki.Cert, Key: pki.Key, ServerName: "x"}
		}), []string{"cluster.tls.server_name"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if err == nil {
				t.Fatal("valid")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q names no %q", err, w)
				}
			}
		})
	}
	for _, good := range []cluster.Config{
		base(func(c *cluster.Config) {
			routes(c)
			c.TLS = cluster.TLSConfig{CA: pki.CA, Cert: pki.Cert, Key: pki.Key}
			c.User, c.Password = "r", "p"
		}),
		base(func(c *cluster.Config) {
			ext(c)
			c.NATS.TLS = cluster.TLSConfig{CA: pki.CA, ServerName: "nats"}
			c.NATS.User, c.NATS.Password = "u", "p"
		}),
		base(func(c *cluster.Config) {
			c.Leaf.URLs = []string{"tls://127.0.0.1:7422"}
			c.Leaf.Token = "t"
			c.Leaf.Domain = "hub"
		}),
	} {
		if err := good.Validate(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
}
