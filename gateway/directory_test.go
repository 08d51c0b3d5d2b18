package gateway

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDirectoryKnownLeavesSIPIdentitiesToSIP: an identity of the SIP
// domain that once had a web session is not Known (its calls, messages
// and watches go to SIP once its sessions are gone); a web-only one
// stays Known, so that an offline one gets 480 rather than 404.
func TestDirectoryKnownLeavesSIPIdentitiesToSIP(t *testing.T) {
	g := newSIPGateway(t)
	g.mu.Lock()
	for _, id := range []string{"carol@example.com", "guest-1@guest.invalid", "bare"} {
		g.known[id] = struct{}{}
	}
	g.mu.Unlock()
	d := directory{g}
	for id, want := range map[string]bool{
		"carol@example.com":     false, // SIP serves her once she left the web
		"guest-1@guest.invalid": true,  // only ever a web identity
		"bare":                  true,  // bare names stay web, as call routing leaves them
		"nobody@guest.invalid":  false,
	} {
		if got := d.Known(id); got != want {
			t.Errorf("Known(%q) = %v, want %v", id, got, want)
		}
	}

	// Without a SIP side every identity that had a session is Known.
	w, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Shutdown(context.Background()) })
	w.mu.Lock()
	w.known["carol@example.com"] = struct{}{}
	w.mu.Unlock()
	if !(directory{w}).Known("carol@example.com") {
		t.Error("without SIP, carol is not Known")
	}
}

// newSIPGateway returns a gateway whose sip section has a UDP listener
// and a domain, nothing else: every other key takes its default, as
// embedders who build a Config in code get them.
func newSIPGateway(t *testing.T) *Gateway {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SIP.Listen.UDP, cfg.SIP.Domain = "127.0.0.1:0", "example.com"
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	return g
}

// Generated guest identities are not remembered: each visitor brings a
// new one, and a table of them would only grow.
func TestGuestIdentitiesNotRemembered(t *testing.T) {
	g, url := newGateway(t, nil)
	for range 3 {
		p := dial(t, url, protocol.SubprotocolJSONrtc, nil)
		r := p.connect("") // open mode: a generated guest identity
		if !strings.HasPrefix(r.Header.Initiator, "guest-") {
			t.Fatalf("connect without an initiator ran as %q", r.Header.Initiator)
		}
	}
	p := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	p.connect("alice@example.com")
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.known["alice@example.com"]; !ok || len(g.known) != 1 {
		t.Fatalf("known identities %v, want alice alone", g.known)
	}
}

// TestClusterLookupFailedIsRetryable: in a cluster, a call to a target
// neither this node's tables nor its view of the directory have, whose
// read of the directory bucket fails, is answered 480 with the lookup's
// reason, not 404 "unknown target": under load the read timed out and
// alice's call to bob, online on the other node, got 404, final for her
// (gateway TestClusterForwardTakenWhileHostWaits, 1 in 80 runs).
func TestClusterLookupFailedIsRetryable(t *testing.T) {
	var emb *natsstore.Embedded
	_, a := aliceOnNode(t, func(s store.Store) store.Store {
		emb = s.(*natsstore.Embedded)
		return s
	})
	js, err := jetstream.New(emb.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(context.Background(), cluster.DirectoryBucket); err != nil {
		t.Fatal(err)
	}
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "a1"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	})
	for {
		r := a.readWithin(directoryTries*clusterTimeout + clusterTimeout)
		if r.Control.Type != protocol.TypeError || r.Header.Action != protocol.ActionStart {
			continue
		}
		if r.Header.ErrorCode != protocol.CodeTemporarilyUnavail || r.Header.Reason != endpoint.ErrLookup {
			t.Fatalf("alice's start got %d %q, want 480 %q", r.Header.ErrorCode, r.Header.Reason, endpoint.ErrLookup)
		}
		return
	}
}

// TestClusterLookupTriedAgain: a read of the directory bucket that
// fails (a bucket electing a leader after a node's death answers
// nothing for seconds) is tried once more before the message it is for
// is refused 480 "try again": the chaos test with node kills refused a
// message to an online user so, once. Here the first read
// fails and the second tells the truth, that carol has no session
// anywhere: alice's message to her gets 404. Reads that keep failing
// still give 480, after two.
func TestClusterLookupTriedAgain(t *testing.T) {
	g, a := aliceOnNode(t, nil)
	var reads, failing atomic.Int32
	failing.Store(1)
	var f lookupFunc = func(ctx context.Context, identity string) ([]cluster.Entry, error) {
		if reads.Add(1) <= failing.Load() {
			<-ctx.Done() // a bucket that does not answer
			return nil, ctx.Err()
		}
		return g.node.Lookup(ctx, identity)
	}
	g.testLookup.Store(&f)
	send := func(seq string) *protocol.Frame {
		t.Helper()
		a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":` + seq + `,"correlation_id":"c` + seq + `"},"header":{"action":"send","initiator":"alice@example.com","target":"carol@example.com"},"payload":{"body":"hi"}}`)
		for {
			r := a.readWithin(directoryTries*clusterTimeout + clusterTimeout)
			if r.Control.CorrelationID == "c"+seq && r.Control.Type == protocol.TypeError {
				return r
			}
		}
	}
	if r := send("2"); r.Header.ErrorCode != protocol.CodeNotFound || reads.Load() != 2 {
		t.Fatalf("with the first read failed: %d %q after %d reads, want 404 after 2", r.Header.ErrorCode, r.Header.Reason, reads.Load())
	}
	reads.Store(0)
	failing.Store(1 << 30)
	if r := send("3"); r.Header.ErrorCode != protocol.CodeTemporarilyUnavail || r.Header.Reason != endpoint.ErrLookup || reads.Load() != directoryTries {
		t.Fatalf("with every read failing: %d %q after %d reads, want 480 %q after %d", r.Header.ErrorCode, r.Header.Reason, reads.Load(), endpoint.ErrLookup, directoryTries)
	}
}
