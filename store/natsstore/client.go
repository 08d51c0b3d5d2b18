package natsstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Client is a store on the JetStream of a NATS cluster this process does
// not run (docs/cluster.md, "An external NATS cluster"): the gateway is
// one of its clients, over the network, and reconnects to any of its
// servers for as long as it runs.
type Client struct {
	*KV
	nc *nats.Conn
}

// DialOptions configure [Dial].
type DialOptions struct {
	// URLs of the cluster's servers. Required.
	URLs []string
	// Name names the connection in the servers' monitoring.
	Name string
	// One way to authenticate, or none: a credentials file, an nkey
	// seed file, a user and password, or a token.
	Creds, NKeyFile, User, Password, Token string
	// TLS toward the servers; nil: TLS only if a URL's scheme is tls
	// or a server requires it.
	TLS *tls.Config
	// Domain is the cluster's JetStream domain; empty: the default API.
	Domain string
	// Store configures the bucket.
	Store Options
	// ReadyTimeout bounds the wait for the servers and their JetStream
	// at start; default 60s.
	ReadyTimeout time.Duration
	// Logger hears of the wait and of each disconnect and reconnect; nil:
	// nothing is logged.
	Logger *slog.Logger
}

// reconnectWait is the pause between two rounds of reconnects: a server
// restarted for an upgrade is back within seconds.
const reconnectWait = 500 * time.Millisecond

// Dial connects to the cluster, trying until ReadyTimeout, and opens the
// bucket. Close closes the connection.
func Dial(ctx context.Context, o *DialOptions) (*Client, error) {
	if o == nil || len(o.URLs) == 0 {
		return nil, errors.New("natsstore: no NATS server URL")
	}
	wait := o.ReadyTimeout
	if wait <= 0 {
		wait = 60 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{nats.Name(o.Name), nats.MaxReconnects(-1), nats.ReconnectWait(reconnectWait),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS disconnected: not ready until reconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	// Connection errors (a refused TLS handshake or password) are kept
	// for the error of a start that waited in vain.
	var last lastError
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { last.set(err) }))
	switch {
	case o.Creds != "":
		opts = append(opts, nats.UserCredentials(o.Creds))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("natsstore: cluster.nats.nkey: %w", err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.TLS != nil {
		opts = append(opts, nats.Secure(o.TLS))
	}
	dctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var nc *nats.Conn
	logged := time.Now()
	for {
		var err error
		if nc, err = nats.Connect(strings.Join(o.URLs, ","), opts...); err == nil {
			break
		}
		last.set(err)
		if permanent(err) {
			return nil, fmt.Errorf("natsstore: cluster.nats: %w", err)
		}
		if time.Since(logged) >= 5*time.Second {
			logged = time.Now()
			log.Info("waiting for the NATS servers", "urls", o.URLs, "err", err)
		}
		select {
		case <-dctx.Done():
			return nil, fmt.Errorf("natsstore: no NATS server of cluster.nats.urls reached within %v: %w", wait, err)
		case <-time.After(reconnectWait):
		}
	}
	js, err := newJetStream(nc, o.Domain)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	kv, err := openWaiting(dctx, js, o.Store, wait, o.Logger, "cluster.nats", last.get, func() []any {
		return []any{"server", nc.ConnectedUrlRedacted(), "status", nc.Status().String()}
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Client{KV: kv, nc: nc}, nil
}

// permanent reports an error that trying again will not mend: the
// configuration is wrong (credentials, TLS).
func permanent(err error) bool {
	var cert *tls.CertificateVerificationError
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrSecureConnRequired) ||
		errors.Is(err, nats.ErrSecureConnWanted) || errors.As(err, &cert) ||
		strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:")
}

// Conn is the connection to the cluster.
func (c *Client) Conn() *nats.Conn { return c.nc }

// Ready reports why the store cannot take a session now, or nil: the
// connection must be up (not reconnecting) and the bucket must answer a
// read.
func (c *Client) Ready(ctx context.Context) error { return ready(ctx, c.nc, c.KV) }

// Close closes the connection.
func (c *Client) Close() { c.nc.Close() }

// lastError keeps the last error of a connection's handlers.
type lastError struct {
	mu  sync.Mutex
	err error
}

func (l *lastError) set(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

func (l *lastError) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		return ""
	}
	return l.err.Error()
}
