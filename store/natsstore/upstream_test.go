package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/internal/natstest"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/nats-io/nats.go"
)

func dial(t *testing.T, o natsstore.DialOptions) (*natsstore.Client, error) {
	t.Helper()
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 20 * time.Second
	}
	c, err := natsstore.Dial(context.Background(), &o)
	if err == nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

// TestDialExternalCluster: a store on an external three-server cluster
// over TLS with a user and password, the bucket on replicas 3: values
// written through one client are read, compare-and-set, through another
// connected to another server.
func TestDialExternalCluster(t *testing.T) {
	pki := natstest.NewPKI(t)
	srv := natstest.Cluster(t, 3, natstest.Options{TLS: pki.ServerTLS(t), User: "gw", Password: "secret"})
	tc, err := cluster.TLSConfig{CA: pki.CA}.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	o := natsstore.DialOptions{User: "gw", Password: "secret", TLS: tc, Store: natsstore.Options{Replicas: 3}}
	o.URLs = []string{srv[0].ClientURL()}
	a, err := dial(t, o)
	if err != nil {
		t.Fatal(err)
	}
	o.URLs = []string{srv[2].ClientURL()}
	b, err := dial(t, o)
	if err != nil {
		t.Fatal(err)
	}
	shared(t, a, b)
	if err := a.Ready(context.Background()); err != nil {
		t.Fatalf("ready: %v", err)
	}
}

// shared checks that a and b share one bucket: what a writes b reads
// with its revision, and compare-and-set holds across them.
func shared(t *testing.T, a, b store.Store) {
	t.Helper()
	ctx := context.Background()
	rev, err := a.Create(ctx, "session.x", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if v, got, err := b.Get(ctx, "session.x"); err != nil || string(v) != "one" || got != rev {
		t.Fatalf("read through the other: %q %d %v", v, got, err)
	}
	if _, err := b.Update(ctx, "session.x", []byte("two"), rev); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Update(ctx, "session.x", []byte("three"), rev); err == nil {
		t.Fatal("a stale revision updated through the other")
	}
}

// TestDialRefused: a wrong password, and a server certificate of another
// CA, fail the start at once with the reason and the key, not after the
// ready timeout.
func TestDialRefused(t *testing.T) {
	pki := natstest.NewPKI(t)
	srv := natstest.Cluster(t, 1, natstest.Options{TLS: pki.ServerTLS(t), User: "gw", Password: "secret"})
	good, err := cluster.TLSConfig{CA: pki.CA}.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := cluster.TLSConfig{CA: natstest.NewPKI(t).CA}.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    natsstore.DialOptions
		want string
	}{
		{"password", natsstore.DialOptions{User: "gw", Password: "wrong", TLS: good}, "authorization"},
		{"ca", natsstore.DialOptions{User: "gw", Password: "secret", TLS: wrong}, "x509"},
		{"system roots", natsstore.DialOptions{User: "gw", Password: "secret"}, "x509"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.o.URLs = []string{srv[0].ClientURL()}
			start := time.Now()
			_, err := dial(t, c.o)
			if err == nil {
				t.Fatal("connected")
			}
			msg := strings.ToLower(err.Error())
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, "cluster.nats") {
				t.Fatalf("error %q names no %q or cluster.nats", err, c.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("failed after %v: waited for a configuration error", d)
			}
		})
	}
}

// TestDialReadyFollowsConnection: while its server is down the store is
// not ready (readyz 503), and it is again once the client reconnected to
// the server restarted.
func TestDialReadyFollowsConnection(t *testing.T) {
	srv := natstest.Cluster(t, 1, natstest.Options{})
	reconnected := make(chan struct{}, 1)
	c, err := dial(t, natsstore.DialOptions{URLs: []string{srv[0].ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	c.Conn().SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })
	disconnected := make(chan struct{}, 1)
	c.Conn().SetDisconnectErrHandler(func(*nats.Conn, error) { disconnected <- struct{}{} })
	ctx := context.Background()
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	srv[0].Shutdown()
	srv[0].WaitForShutdown()
	<-disconnected
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = c.Ready(rctx)
	cancel()
	if err == nil {
		t.Fatal("ready with the server down")
	}
	srv[0].Restart(t)
	select {
	case <-reconnected:
	case <-time.After(20 * time.Second):
		t.Fatal("no reconnect")
	}
	if err := untilNil(10*time.Second, func() error { return c.Ready(ctx) }); err != nil {
		t.Fatalf("not ready after the reconnect: %v", err)
	}
}

// untilNil calls f until it returns nil, for at most d: a restarted
// JetStream takes a moment to serve its streams again, and the state of
// a connection has no event a test can wait on.
func untilNil(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeafNodes: two gateways' embedded servers, leaf nodes of a hub
// cluster of three with a JetStream domain, TLS and a password, keep one
// bucket in the hub's JetStream: what one writes the other reads, and
// their in-process connections reach each other's subjects.
func TestLeafNodes(t *testing.T) {
	pki := natstest.NewPKI(t)
	hub := natstest.Cluster(t, 3, natstest.Options{TLS: pki.ServerTLS(t), User: "leaf", Password: "secret", Domain: "hub", Leaf: true})
	tc, err := cluster.TLSConfig{CA: pki.CA}.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leaves := make([]*natsstore.Embedded, 2)
	var wg sync.WaitGroup
	for i := range leaves {
		u, err := cluster.ParseURL(hub[i].LeafURL())
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			e, err := natsstore.Start(context.Background(), &natsstore.EmbeddedOptions{Dir: filepath.Join(dir, fmt.Sprint(i)),
				Store: natsstore.Options{Replicas: 3}, ReadyTimeout: 30 * time.Second,
				Leaf: &natsstore.LeafOptions{Name: fmt.Sprintf("g%d", i+1), URLs: []*url.URL{u}, User: "leaf", Password: "secret", TLS: tc, Domain: "hub"}})
			if err != nil {
				t.Error(err)
				return
			}
			leaves[i] = e
			t.Cleanup(e.Close)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	shared(t, leaves[0], leaves[1])
	ctx := context.Background()
	sub, err := leaves[1].Conn().Subscribe("jsonrtc.node.g2.ping", func(m *nats.Msg) { m.Respond([]byte("pong")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var reply *nats.Msg
	err = untilNil(10*time.Second, func() (err error) {
		reply, err = leaves[0].Conn().Request("jsonrtc.node.g2.ping", nil, time.Second)
		return err
	})
	if err != nil || string(reply.Data) != "pong" {
		t.Fatalf("g1 to g2 over the hub: %v", err)
	}

	// The hub goes: the leaves are not ready until their leaf
	// connections are back, the hub restarted. (One hub server gone is
	// not enough: a leaf reconnects to another, which the hub advertises.)
	if err := leaves[0].Ready(ctx); err != nil {
		t.Fatal(err)
	}
	// Two hub servers gone, the third has no quorum: a read waits out
	// its deadline. The third goes while a probe waits: the probe names
	// the leaf connection, not the read's deadline (it named the
	// deadline when the hub went during a probe).
	for _, s := range hub[:2] {
		s.Shutdown()
		s.WaitForShutdown()
	}
	err = untilNil(20*time.Second, func() error {
		if leaves[0].Server().NumLeafNodes() == 0 {
			return errors.New("no leaf connection")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("g1 not back on the third hub server: %v", err)
	}
	probe := make(chan error, 1)
	go func() { probe <- leaves[0].Ready(ctx) }()
	hub[2].Shutdown()
	hub[2].WaitForShutdown()
	if err := <-probe; err == nil || !strings.Contains(err.Error(), "leaf") {
		t.Fatalf("a probe under way as the hub went: %v", err)
	}
	// The leaf sees its connection closed a moment later.
	var down error
	untilNil(10*time.Second, func() error {
		if down = leaves[0].Ready(ctx); down == nil {
			return errors.New("still ready")
		}
		return nil
	})
	if down == nil || !strings.Contains(down.Error(), "leaf") {
		t.Fatalf("ready with the hub gone: %v", down)
	}
	for _, s := range hub {
		s.Restart(t)
	}
	if err := untilNil(30*time.Second, func() error { return leaves[0].Ready(ctx) }); err != nil {
		t.Fatalf("not ready after the hub came back: %v", err)
	}
}

// TestRouteTLS: three embedded servers whose routes need TLS (mutual,
// one CA) and a password form the cluster; a node whose certificate is
// of another CA (its own CA file consistent) never joins, and its start
// fails naming cluster.tls with the handshake's error.
func TestRouteTLS(t *testing.T) {
	pki := natstest.NewPKI(t)
	rt, err := cluster.TLSConfig{CA: pki.CA, Cert: pki.Cert, Key: pki.Key}.RouteTLS()
	if err != nil {
		t.Fatal(err)
	}
	nodes := startClusterWith(t, func(_ int, o *natsstore.EmbeddedOptions) {
		o.Cluster.TLS, o.Cluster.User, o.Cluster.Password = rt, "route", "secret"
	})
	shared(t, nodes[0], nodes[2])
	ctx := context.Background()

	other := natstest.NewPKI(t)
	bad, err := cluster.TLSConfig{CA: other.CA, Cert: other.Cert, Key: other.Key}.RouteTLS()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.Port(t))
	var routes []string
	for _, n := range nodes {
		routes = append(routes, n.Server().ClusterAddr().String())
	}
	_, err = natsstore.Start(ctx, &natsstore.EmbeddedOptions{Dir: t.TempDir(), Store: natsstore.Options{Replicas: 3},
		ReadyTimeout: 5 * time.Second,
		Cluster:      &natsstore.ClusterOptions{Name: "n4", Listen: listen, Routes: routes, TLS: bad, User: "route", Password: "secret"}})
	if err == nil {
		t.Fatal("a node of another CA joined")
	}
	if msg := err.Error(); !strings.Contains(msg, "cluster.tls") || !strings.Contains(msg, "x509") {
		t.Fatalf("error %q names no cluster.tls or x509 error", err)
	}
}
