package natsstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Embedded is a NATS server running inside this process, with
// JetStream file storage under a directory, and a store on it. It
// listens on no client port: the process connects to it in memory. With
// EmbeddedOptions.Cluster it also listens for routes from its peers, the
// embedded servers of the other gateways, and JetStream is clustered
// among them.
type Embedded struct {
	*KV
	srv  *server.Server
	nc   *nats.Conn
	lock *os.File
	errs *serverErrors
	leaf bool // a leaf node of a hub (EmbeddedOptions.Leaf)
	// caughtUp: the server's JetStream was current on every stream it
	// is a member of once since the start (Ready).
	caughtUp atomic.Bool
}

// EmbeddedOptions configure [Start].
type EmbeddedOptions struct {
	// Dir holds JetStream's files; it is created if missing. Required.
	Dir string
	// Store configures the bucket.
	Store Options
	// StartTimeout bounds the server's start; default 10s.
	StartTimeout time.Duration
	// Cluster, when set, joins the server to a NATS cluster through
	// routes; nil: a single node.
	Cluster *ClusterOptions
	// Leaf, when set, makes the server a leaf node of a central NATS
	// cluster whose JetStream keeps the bucket; the server then runs no
	// JetStream of its own and Dir holds only the lock. Not with Cluster.
	Leaf *LeafOptions
	// ReadyTimeout bounds the wait for JetStream to take the bucket (a
	// clustered JetStream needs a quorum of its peers up); default 60s.
	ReadyTimeout time.Duration
	// Logger hears of the wait for JetStream; nil: nothing is logged.
	Logger *slog.Logger

	token string // the client listener's, with a cluster
}

// ClusterOptions make the embedded server one node of a NATS cluster.
type ClusterOptions struct {
	// Name is the node's name, unique in the cluster (the NATS server
	// name, and JetStream's peer name).
	Name string
	// Listen is the route listener's host:port.
	Listen string
	// Routes are the peers' route addresses (host:port); this node's own
	// may be among them (NATS ignores a route to itself).
	Routes []string
	// TLS, when set, secures the routes both ways: the server's and the
	// route client's configuration (certificate, CAs, client auth).
	TLS *tls.Config
	// User and Password, when set, are required of the peers' routes and
	// offered on this node's.
	User, Password string
}

// LeafOptions make the embedded server a leaf node of a hub cluster.
type LeafOptions struct {
	// Name is the node's name (the leaf server's name).
	Name string
	// URLs are the hub's leaf node listeners.
	URLs []*url.URL
	// One way to authenticate, or none: a credentials file, the seed of
	// an nkey (the seed itself, not a file), a user and password, or a
	// token.
	Creds, NKeySeed, User, Password, Token string
	// TLS toward the hub; nil: TLS only if a URL's scheme is tls.
	TLS *tls.Config
	// Domain is the hub's JetStream domain; empty: the default API.
	Domain string
}

// routePing and routePingsOut: a silent route is closed within about
// routePing × (routePingsOut + 1).
const (
	routePing     = 2 * time.Second
	routePingsOut = 3
)

// ClusterName is the NATS cluster name the gateways' servers share.
const ClusterName = "jsonrtc"

// serverOptions builds the NATS server's options for o.
func (o *EmbeddedOptions) serverOptions() (*server.Options, error) {
	// A value must fit in one message, with room for the headers.
	payload := int32(server.MAX_PAYLOAD_SIZE)
	if p := o.Store.MaxValueBytes + 4096; o.Store.MaxValueBytes > 0 && p > int(payload) {
		payload = int32(p)
	}
	so := &server.Options{
		ServerName: "jsonrtcd",
		DontListen: true,
		JetStream:  true,
		StoreDir:   o.Dir,
		MaxPayload: payload,
		// The gateway handles signals, and logs what matters itself.
		NoSigs: true,
		NoLog:  true,
	}
	if c := o.Cluster; c != nil {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsstore: route listen address %q: %w", c.Listen, err)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("natsstore: route listen port %q: %w", port, err)
		}
		so.ServerName = c.Name
		so.Cluster = server.ClusterOpts{Name: ClusterName, Host: host, Port: n, TLSConfig: c.TLS,
			Username: c.User, Password: c.Password,
			// A route whose peer went silent (a link cut, no RST) is
			// closed after routePingsOut unanswered pings: until then
			// this server keeps the peer's interest, and a request to the
			// peer times out instead of finding no responders, which
			// sends it through a third node (cluster's via.go). NATS's
			// own default takes a minute or more.
			PingInterval: routePing, MaxPingsOut: routePingsOut}
		if c.TLS != nil {
			so.Cluster.TLSTimeout = 5
		}
		// NATS starts its routes only once its client listener is up:
		// a cluster needs one. It takes a random loopback port and a
		// random token that only this process knows, so that clients
		// still are the process itself alone.
		so.DontListen, so.Host, so.Port = false, "127.0.0.1", server.RANDOM_PORT
		so.Authorization = o.token
		for _, r := range c.Routes {
			u, err := url.Parse("nats-route://" + r)
			if err != nil {
				return nil, fmt.Errorf("natsstore: route %q: %w", r, err)
			}
			if c.User != "" {
				u.User = url.UserPassword(c.User, c.Password)
			}
			so.Routes = append(so.Routes, u)
		}
	}
	if l := o.Leaf; l != nil {
		// The hub's JetStream keeps the buckets: this server's client
		// (the process) reaches it over the leaf connection.
		so.ServerName, so.JetStream, so.StoreDir = l.Name, false, ""
		remote := &server.RemoteLeafOpts{Credentials: l.Creds, Nkey: l.NKeySeed, TLSConfig: l.TLS, TLS: l.TLS != nil}
		for _, u := range l.URLs {
			u := *u
			if u.Scheme == "tls" {
				remote.TLS = true
			} else {
				u.Scheme = "nats-leaf"
			}
			switch {
			case l.User != "":
				u.User = url.UserPassword(l.User, l.Password)
			case l.Token != "":
				u.User = url.User(l.Token)
			}
			remote.URLs = append(remote.URLs, &u)
		}
		if remote.TLS {
			remote.TLSTimeout = 5 // NATS's 2 s is short on a loaded host
		}
		so.LeafNode.Remotes = []*server.RemoteLeafOpts{remote}
		so.LeafNode.ReconnectInterval = time.Second
	}
	return so, nil
}

// Start runs the server and opens the bucket. Close stops both. Options
// are required: they name the data directory.
func Start(ctx context.Context, opts *EmbeddedOptions) (*Embedded, error) {
	if opts == nil || opts.Dir == "" {
		return nil, errors.New("natsstore: no data directory")
	}
	if opts.Cluster != nil && opts.Leaf != nil {
		return nil, errors.New("natsstore: routes and a leaf connection: one or the other")
	}
	o := *opts // defaults are filled in a copy
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	// JetStream does not lock its directory: two servers on one would
	// corrupt each other's files.
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	if o.Cluster != nil {
		o.token = rand.Text()
	}
	so, err := o.serverOptions()
	if err != nil {
		lock.Close()
		return nil, err
	}
	srv, err := server.NewServer(so)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	errs := &serverErrors{}
	srv.SetLoggerV2(errs, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(o.StartTimeout) {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("natsstore: the embedded NATS server did not start within %v (data directory %s)", o.StartTimeout, o.Dir)
	}
	// The client's own 2 s to read the server's INFO is too short for a
	// loaded machine where several nodes start at once ("read pipe: i/o
	// timeout": the node exited at start): the server's start bound.
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("jsonrtcd"), nats.Token(o.token), nats.Timeout(o.StartTimeout))
	if err != nil {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	e := &Embedded{srv: srv, nc: nc, lock: lock, errs: errs, leaf: o.Leaf != nil}
	domain := ""
	if o.Leaf != nil {
		domain = o.Leaf.Domain
	}
	js, err := newJetStream(nc, domain)
	if err == nil {
		e.KV, err = e.open(ctx, js, o)
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// open opens the bucket. A clustered JetStream takes it only once a
// quorum of peers is up and has a meta leader (a leaf's, once the hub is
// reached), so until ReadyTimeout each failure is retried, and logged
// every few seconds.
func (e *Embedded) open(ctx context.Context, js jetstream.JetStream, o EmbeddedOptions) (*KV, error) {
	switch {
	case o.Cluster != nil:
		keys := "cluster.routes"
		if o.Cluster.TLS != nil {
			keys += ", cluster.tls"
		}
		if o.Cluster.User != "" {
			keys += ", cluster.user"
		}
		return openWaiting(ctx, js, o.Store, o.ReadyTimeout, o.Logger, keys, e.errs.Last, func() []any {
			return []any{"node", o.Cluster.Name, "routes", e.srv.NumRoutes()}
		})
	case o.Leaf != nil:
		return openWaiting(ctx, js, o.Store, o.ReadyTimeout, o.Logger, "cluster.leaf", e.errs.Last, func() []any {
			return []any{"node", o.Leaf.Name, "leaf_connections", e.srv.NumLeafNodes()}
		})
	}
	return New(ctx, js, &o.Store)
}

// newJetStream is JetStream on nc, in domain when one is named.
func newJetStream(nc *nats.Conn, domain string) (jetstream.JetStream, error) {
	if domain != "" {
		return jetstream.NewWithDomain(nc, domain)
	}
	return jetstream.New(nc)
}

// openWaiting opens the bucket, trying again until wait (default 60s)
// passes; what names the configuration key to check in the error, cause
// the last failure of the connections to the peers (or ""), and state
// what the log says of the wait.
func openWaiting(ctx context.Context, js jetstream.JetStream, so Options, wait time.Duration, log *slog.Logger, what string, cause func() string, state func() []any) (*KV, error) {
	if wait <= 0 {
		wait = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start, logged := time.Now(), time.Now()
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := New(actx, js, &so)
		acancel()
		if err == nil {
			if log != nil {
				log.Info("JetStream ready", append(state(), "waited", time.Since(start).Round(time.Millisecond))...)
			}
			return kv, nil
		}
		if ctx.Err() != nil {
			if c := cause(); c != "" {
				return nil, fmt.Errorf("natsstore: JetStream not ready within %v: %s: the last connection error: %s (%w)", wait, what, c, err)
			}
			return nil, fmt.Errorf("natsstore: JetStream not ready within %v (are enough of %s up?): %w", wait, what, err)
		}
		if log != nil && time.Since(logged) >= 5*time.Second {
			logged = time.Now()
			log.Info("waiting for JetStream", append(state(), "err", err, "connection_error", cause())...)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Conn is the in-process connection to the server, for the cluster's
// node-to-node subjects and buckets.
func (e *Embedded) Conn() *nats.Conn { return e.nc }

// Server is the embedded NATS server.
func (e *Embedded) Server() *server.Server { return e.srv }

// Close closes the connection and shuts the server down, which writes
// JetStream's state out to its files.
func (e *Embedded) Close() {
	e.nc.Close()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.lock.Close() // releases the lock
}

// lockDir takes an exclusive lock on dir's lock file, or fails at once.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("natsstore: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("natsstore: data directory %s is in use by another process: %w", dir, err)
	}
	return f, nil
}

// serverErrors keeps the embedded server's last error (a route's or the
// leaf connection's TLS handshake or authentication refused), for the
// error of a start that waited for JetStream in vain: NATS logs nothing
// else of why its peers are not there. It logs nothing itself (the
// route port is open to the network: anyone could fill a log).
type serverErrors struct {
	mu   sync.Mutex
	last string
}

func (l *serverErrors) Errorf(format string, v ...any) { l.note(format, v) }
func (l *serverErrors) Warnf(format string, v ...any)  { l.note(format, v) }
func (l *serverErrors) Fatalf(format string, v ...any) { l.note(format, v) }
func (*serverErrors) Noticef(string, ...any)           {}
func (*serverErrors) Debugf(string, ...any)            {}
func (*serverErrors) Tracef(string, ...any)            {}

func (l *serverErrors) note(format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	// Only what concerns the connections to the peers: JetStream's own
	// complaints while it waits for them say nothing of why.
	low := strings.ToLower(msg)
	if !strings.Contains(low, "tls") && !strings.Contains(low, "x509") && !strings.Contains(low, "auth") &&
		!strings.Contains(low, "route") && !strings.Contains(low, "leaf") {
		return
	}
	l.mu.Lock()
	l.last = msg
	l.mu.Unlock()
}

// Last is the last error noted, or "".
func (l *serverErrors) Last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}
