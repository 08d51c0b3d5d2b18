package interop

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// A client that computes each digest response itself (docs/protocol.md
// §4.8) leaves the gateway nothing to answer the challenge of a refresh
// with: the gateway asks the live session (request/authenticate), whose
// answer keeps the registration, refresh after refresh. On logout the
// removal carries the last answer, which Kamailio still takes: the
// binding goes at once instead of lingering until it expires.
func TestWebLiveChallengeAtRefresh(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) { c.SIP.RegisterExpiry = 10 * time.Second })
	var n atomic.Int32
	answered := make(chan struct{}, 8)
	inner := computedAuthorizer("carol", users["carol"], &n)
	c := w.connect(t, "carol@"+domain, func(o *client.Options) {
		o.Authorize = func(ctx context.Context, raw json.RawMessage) (json.RawMessage, error) {
			a, err := inner(ctx, raw)
			answered <- struct{}{}
			return a, err
		}
	})
	sid := c.SessionID()
	// The connect's challenge, then one per refresh (every 8 s: 80% of
	// Kamailio's 10 s).
	for i := range 3 {
		select {
		case <-answered:
		case <-c.Done():
			t.Fatalf("session ended after %d answers: %v", i, c.Err())
		case <-time.After(30 * time.Second):
			t.Fatalf("%d answers, want 3", i)
		}
	}
	// The second refresh's REGISTER went out after its answer: wait for
	// it to be decided before checking that it kept the session.
	probe := func() int {
		code, err := optionsStatus(k.Addr, "sip:carol@"+domain, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	if code := probe(); code == 404 {
		t.Fatal("carol has no binding after the refreshes")
	}
	select {
	case <-c.Done():
		t.Fatalf("session ended: %v", c.Err())
	case <-time.After(time.Second):
	}
	if c.SessionID() != sid || w.g.SIPStats().Registrations != 1 {
		t.Fatalf("session %s (was %s), SIP %+v", c.SessionID(), sid, w.g.SIPStats())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	until(t, "carol's binding to be removed", func() bool { return probe() == 404 })
	until(t, "the registration to be released", func() bool { return w.g.SIPStats().Registrations == 0 })
}

// wsc.js cannot answer a gateway's request: a webrtc.oracle.com session
// is never asked, and a client-computed response leaves its registration
// to be lost at the first challenged refresh, as documented
// (docs/protocol.md §4.8): the session ends, close 1001.
func TestWebLiveChallengeNotAskedOfOracle(t *testing.T) {
	k := startKamailio(t)
	w := startWebGateway(t, k, func(c *gateway.Config) { c.SIP.RegisterExpiry = 10 * time.Second })
	var n atomic.Int32
	c := w.connect(t, "carol@"+domain, func(o *client.Options) {
		o.Subprotocol = protocol.SubprotocolOracle
		o.Authorize = computedAuthorizer("carol", users["carol"], &n)
	})
	ev := webNext(t, c, client.EventReconnecting)
	var ce websocket.CloseError
	if !errors.As(ev.Err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "SIP registration lost" || n.Load() != 1 {
		t.Fatalf("socket lost with %v after %d answers, want close 1001 after the connect's only", ev.Err, n.Load())
	}
}
