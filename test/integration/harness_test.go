// Package integration runs the Go client against a real gateway over real
// sockets on loopback.
package integration

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/transport/connlimit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newGateway builds a gateway for the test and shuts it down at cleanup
// (after the server the caller starts, whose cleanup runs first).
func newGateway(t testing.TB, mod func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	return newGatewayOpts(t, mod, gateway.Options{})
}

// newGatewayOpts is newGateway with options (a logger).
func newGatewayOpts(t testing.TB, mod func(*gateway.Config), opts gateway.Options) *gateway.Gateway {
	t.Helper()
	cfg := gateway.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	g, err := gateway.New(cfg, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
	})
	return g
}

// startGateway runs a gateway on a loopback port for the test.
func startGateway(t testing.TB, mod func(*gateway.Config)) (*gateway.Gateway, string) {
	t.Helper()
	return startGatewayOpts(t, mod, gateway.Options{})
}

// startGatewayOpts is startGateway with options (a logger).
func startGatewayOpts(t testing.TB, mod func(*gateway.Config), opts gateway.Options) (*gateway.Gateway, string) {
	t.Helper()
	g := newGatewayOpts(t, mod, opts)
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return g, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/webrtc/test"
}

func connect(t testing.TB, url, identity string, mod func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{URL: url, Identity: identity, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err != nil {
		t.Fatalf("dial %s: %v", identity, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next event of kind k, skipping others, within 10 s.
func next(t testing.TB, c *client.Client, k client.EventKind) client.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: events closed waiting for %s", c.Identity(), k)
			}
			if ev.Kind == k {
				return ev
			}
			if ev.Kind == client.EventClosed {
				t.Fatalf("%s: closed waiting for %s: %v", c.Identity(), k, ev.Err)
			}
		case <-timeout:
			t.Fatalf("%s: no %s event", c.Identity(), k)
		}
	}
}

// nextCall returns the next call event of c.
func nextCall(t testing.TB, c *client.Client) client.Event {
	t.Helper()
	return next(t, c, client.EventCall)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// startGuardedGateway runs a gateway as jsonrtcd does: on a listener
// guarded by its connection caps (Gateway.Guard), with the timeouts of
// its http section. It returns the listener (to read its open count) and
// the host:port.
func startGuardedGateway(t testing.TB, mod func(*gateway.Config)) (*gateway.Gateway, *connlimit.Listener, string) {
	t.Helper()
	g := newGateway(t, mod)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := g.Guard(tcp)
	if err != nil {
		tcp.Close()
		t.Fatal(err)
	}
	srv := g.HTTPServer()
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return g, l, tcp.Addr().String()
}
