package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/internal/fakereg"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// TestClusterTakeoverMovesRegistration: alice's SIP binding moves with
// her session. n1 registers her; her resume on n2 makes n2 register
// under the instance of n1's binding (kept in the session's record) with
// its own Contact, which the registrar takes as a replacement; n1 lets
// go without removing it. Before, n2 registered an instance of its own
// (the registrar then held two bindings, n1's until it expired: after
// a kill -9, one pointing at a dead node) and n1 sent Expires: 0.
func TestClusterTakeoverMovesRegistration(t *testing.T) {
	reg := fakereg.Start(t)
	// No instance_id: each node's secret is its own, and so the
	// instances it derives.
	gs, urls := newClusterGatewaysMod(t, 2, nil, func(c *Config) {
		c.SIP.Listen.UDP, c.SIP.Domain = "127.0.0.1:0", "example.com"
		c.SIP.Registrar = "sip:" + reg.Addr
	})
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	first := reg.Next(t)
	if first.Instance == "" || first.Expires == "0" {
		t.Fatalf("n1 registered %+v", first)
	}

	p2 := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	p2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`)
	if f := p2.read(); f.Control.Type != protocol.TypeResponse || f.Control.SessionID != a.sid {
		t.Fatalf("resume on n2 answered %+v", f.Control)
	}
	if code := a.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("n1's socket closed with %d, want 1013 (silent: TestTakeoverOfASilentSocket)", code)
	}
	moved := reg.Next(t)
	if moved.Instance != first.Instance || moved.Contact == first.Contact || moved.Expires == "0" {
		t.Fatalf("n2 registered %+v after n1's %+v: want n1's instance with n2's Contact", moved, first)
	}
	// n1 lets go without a removal, even as it shuts down.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gs[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	reg.None(t)
	data, _, err := gs[1].store.Get(ctx, recordKey(a.sid))
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || r.RegInstance != first.Instance {
		t.Fatalf("record reg_instance %q (%v), want %q", r.RegInstance, err, first.Instance)
	}
}

// TestStaleCopyLeavesRegistration: a session whose record another writer
// took (a resume on another process sharing the store) ends here as a
// stale copy without removing its binding, which the new owner
// registered under the same instance. Before, the copy's end sent
// Expires: 0.
func TestStaleCopyLeavesRegistration(t *testing.T) {
	reg := fakereg.Start(t)
	g, url := newGatewayOpts(t, func(c *Config) {
		c.SIP.Listen.UDP, c.SIP.Domain = "127.0.0.1:0", "example.com"
		c.SIP.Registrar = "sip:" + reg.Addr
	}, Options{Store: store.NewMemory()})
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	if got := reg.Next(t); got.Expires == "0" {
		t.Fatalf("registered %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, rev, err := g.store.Get(ctx, recordKey(a.sid))
	if err != nil {
		t.Fatal(err)
	}
	// Another writer's record: not byte for byte what this copy would
	// write (a copy that finds its own bytes takes them for its earlier
	// write whose answer was lost, Gateway.update).
	if _, err := g.store.Update(ctx, recordKey(a.sid), append(data, ' '), rev); err != nil {
		t.Fatal(err)
	}
	g.lookup(a.sid).Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	a.closeCode()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	reg.None(t)
}
