package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed certificate with the given serial.
func writePair(t *testing.T, dir string, serial int64, mod time.Time) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
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
	return cf, kf
}

func serial(t *testing.T, r *Reloader) int64 {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	cf, kf := writePair(t, dir, 1, t0)
	r, err := New(cf, kf, &Options{Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	if serial(t, r) != 1 {
		t.Fatal("first certificate")
	}
	writePair(t, dir, 2, t0.Add(time.Minute))
	if serial(t, r) != 1 {
		t.Fatal("reloaded before the interval")
	}
	clock = clock.Add(time.Minute)
	if serial(t, r) != 2 {
		t.Fatal("renewed certificate not picked up")
	}
	// A broken renewal keeps the working certificate.
	os.WriteFile(cf, []byte("garbage"), 0o600)
	os.Chtimes(cf, t0.Add(2*time.Minute), t0.Add(2*time.Minute))
	clock = clock.Add(time.Minute)
	if serial(t, r) != 2 {
		t.Fatal("a broken renewal replaced the certificate")
	}
}

func TestNewFails(t *testing.T) {
	if _, err := New("/nonexistent/cert.pem", "/nonexistent/key.pem", nil); err == nil {
		t.Fatal("missing files accepted")
	}
}
