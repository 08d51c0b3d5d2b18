package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
)

// TestConnectRetriedWhileFull: a gateway at session.max_sessions answers
// a new session's connect 503 "too many sessions"; the client tries again
// after its backoff rather than give up, and gets its session once a
// session has ended.
func TestConnectRetriedWhileFull(t *testing.T) {
	_, url := startGateway(t, func(c *gateway.Config) { c.Session.MaxSessions = 1 })
	alice := connect(t, url, "alice@example.com", nil)
	refused := make(chan struct{}, 64)
	type dialed struct {
		c   *client.Client
		err error
	}
	bob := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, client.Options{URL: url, Identity: "bob@example.com",
			ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, ConnectAttempts: 100,
			OnFrame: func(out bool, data []byte) {
				if !out && bytes.Contains(data, []byte(`"error_code":503`)) {
					select {
					case refused <- struct{}{}:
					default:
					}
				}
			}})
		bob <- dialed{c, err}
	}()
	select {
	case <-refused:
	case d := <-bob:
		t.Fatalf("bob's Dial ended before a refusal: %v", d.err)
	}
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	d := <-bob
	if d.err != nil {
		t.Fatalf("bob's Dial: %v", d.err)
	}
	defer d.c.Close()
	if d.c.SessionID() == "" || d.c.Identity() != "bob@example.com" {
		t.Fatalf("bob: session %q as %q", d.c.SessionID(), d.c.Identity())
	}
}
