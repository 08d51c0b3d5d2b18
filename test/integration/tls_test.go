package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/transport/certs"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and returns it.
func writeCert(t *testing.T, dir string, serial int64, mod time.Time) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "jsonrtc test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	os.Chtimes(cf, mod, mod)
	os.Chtimes(kf, mod, mod)
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestWSSWithCertificateRenewal serves wss:// from certificate files, then
// renews them: new connections get the new certificate without a restart.
func TestWSSWithCertificateRenewal(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	first := writeCert(t, dir, 1, t0)
	r, err := certs.New(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), &certs.Options{Interval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// As jsonrtcd does: a TLS listener whose certificate comes from r.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.Handler()}
	go srv.Serve(tls.NewListener(ln, r.Config()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
		srv.Shutdown(ctx)
	})
	url := "wss://" + ln.Addr().String() + "/ws/webrtc/test"
	trusting := func(c *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(c)
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	a := connect(t, url, "alice@example.com", func(o *client.Options) { o.HTTPClient = trusting(first) })
	second := writeCert(t, dir, 2, t0.Add(time.Minute))
	// A client that trusts only the new certificate connects: the renewal
	// was picked up without a restart; the old session is untouched.
	b := connect(t, url, "bob@example.com", func(o *client.Options) {
		o.HTTPClient = trusting(second)
		o.AutoAcceptMessages = true
	})
	go func() {
		for range b.Events() {
		}
	}()
	if code, err := a.Send(ctx(t), "bob@example.com", "text/plain", "over TLS"); err != nil || code != 200 {
		t.Fatalf("send over wss: %d %v", code, err)
	}
}
