// Package certs serves a TLS certificate from files and picks up a
// renewed certificate without a restart: the files are checked at most
// once per interval, on the handshakes that need a certificate, and a
// changed pair is loaded (a pair that fails to load is logged and the old
// certificate is kept, so a half-written renewal never breaks service).
package certs

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Reloader holds the certificate of one cert/key file pair.
type Reloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time // of the newer of the two files when loaded
	checked time.Time
}

// Options configure a Reloader.
type Options struct {
	// Interval is the least time between two checks of the files.
	// Default 10 s.
	Interval time.Duration
	Logger   *slog.Logger
}

// New loads the pair, failing if it cannot.
func New(certFile, keyFile string, opts *Options) (*Reloader, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, interval: o.Interval, log: o.Logger, now: time.Now}
	mt, err := r.modified()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	r.cert, r.modTime, r.checked = &cert, mt, r.now()
	return r, nil
}

func (r *Reloader) modified() (time.Time, error) {
	var newest time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return time.Time{}, fmt.Errorf("certs: %w", err)
		}
		if st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	return newest, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.interval {
		r.checked = now
		r.reloadLocked()
	}
	return r.cert, nil
}

func (r *Reloader) reloadLocked() {
	mt, err := r.modified()
	if err != nil {
		r.log.Warn("certificate files unreadable; keeping the current certificate", "err", err)
		return
	}
	if mt.Equal(r.modTime) {
		return
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.log.Warn("certificate files changed but do not load; keeping the current certificate", "err", err)
		return
	}
	r.cert, r.modTime = &cert, mt
	r.log.Info("certificate reloaded", "cert_file", r.certFile)
}

// Config returns a server tls.Config that serves the reloaded certificate
// (TLS 1.2 at least).
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
