// Package natstest runs real NATS servers in the test's process, for the
// tests of a gateway on a NATS cluster it does not run (docs/cluster.md:
// cluster.nats, cluster.leaf), and writes the PKI their TLS needs.
package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/nats-io/nats-server/v2/server"
)

// PKI is a CA and a certificate it signed for 127.0.0.1 and localhost
// (server and client use), as PEM files.
type PKI struct {
	CA, Cert, Key string
	ca            *x509.Certificate
	caKey         *ecdsa.PrivateKey
}

// NewPKI writes a CA and one certificate under a temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "natstest CA " + rand.Text()[:8]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: filepath.Join(dir, "ca.pem"), caKey: key}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.CA, "CERTIFICATE", der)
	p.Cert, p.Key = p.Issue(t, "node")
	return p
}

// Issue writes another certificate signed by the CA, and its key.
func (p *PKI) Issue(t testing.TB, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p.CA)
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, key, "PRIVATE KEY", kder)
	return cert, key
}

// ServerTLS is a server's TLS configuration with the certificate.
func (p *PKI) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Options configure the servers of [Cluster].
type Options struct {
	// TLS, when set, is required of clients and leaf nodes.
	TLS *tls.Config
	// User and Password, when set, are required of clients and leaf
	// nodes.
	User, Password string
	// Domain is JetStream's domain; empty: none.
	Domain string
	// Leaf opens a leaf node listener on each server.
	Leaf bool
}

// Server is one server of a cluster.
type Server struct {
	*server.Server
	opts *server.Options
}

// ClientURL is the server's client URL, host:port.
func (s *Server) ClientURL() string {
	return net.JoinHostPort(s.opts.Host, fmt.Sprint(s.opts.Port))
}

// LeafURL is the server's leaf node listener, host:port.
func (s *Server) LeafURL() string {
	return net.JoinHostPort(s.opts.LeafNode.Host, fmt.Sprint(s.opts.LeafNode.Port))
}

// Restart shuts the server down and starts it again on the same ports
// and storage, returning once it takes connections.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	s.Server = start(t, s.opts)
}

// Cluster starts n JetStream servers joined by routes on loopback (one
// alone when n is 1), each taking clients on a random port; they are
// shut down at the test's end. It returns once every server takes
// connections; JetStream's meta leader may still be being elected.
func Cluster(t testing.TB, n int, o Options) []*Server {
	t.Helper()
	routes := make([]int, n)
	for i := range routes {
		routes[i] = testenv.Port(t)
	}
	var urls []*url.URL
	for _, p := range routes {
		urls = append(urls, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	out := make([]*Server, n)
	for i := range out {
		so := &server.Options{ServerName: fmt.Sprintf("ext%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), JetStreamDomain: o.Domain, NoSigs: true, NoLog: true,
			TLSConfig: o.TLS, TLS: o.TLS != nil, TLSTimeout: 5, Username: o.User, Password: o.Password}
		if n > 1 {
			so.Cluster = server.ClusterOpts{Name: "ext", Host: "127.0.0.1", Port: routes[i]}
			so.Routes = urls
		}
		if o.Leaf {
			so.LeafNode = server.LeafNodeOpts{Host: "127.0.0.1", Port: testenv.Port(t), TLSConfig: o.TLS, TLSTimeout: 5,
				Username: o.User, Password: o.Password}
		}
		out[i] = &Server{Server: start(t, so), opts: so}
		// Restart binds the same port again.
		so.Port = out[i].Addr().(*net.TCPAddr).Port
	}
	t.Cleanup(func() {
		for _, s := range out {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	return out
}

func start(t testing.TB, so *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("NATS server %s did not start", so.ServerName)
	}
	return s
}
