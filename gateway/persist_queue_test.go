package gateway

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// A session written by save (a socket loss, a start) while it waited in
// the writer's queue, then dirtied again, is queued once: queued twice,
// the writer's round took its saveMu twice and hung holding walMu, and
// with it every session's inbound frames (seen once in test/integration
// as a session end stuck on saveMu).
func TestSavedSessionQueuedOnce(t *testing.T) {
	g, url := newGatewayOpts(t, nil, Options{Store: store.NewMemory()})
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	s := g.lookup(a.connect("alice@example.com").Control.SessionID)
	// The writer takes its queue under walMu: held shared, the queue is
	// the test's until it lets go.
	g.walMu.RLock()
	s.mu.Lock()
	s.markDirtyLocked()
	s.mu.Unlock()
	g.save(s)
	s.mu.Lock()
	s.markDirtyLocked()
	s.mu.Unlock()
	g.dirtyMu.Lock()
	n := 0
	for _, d := range g.dirty {
		if d == s {
			n++
		}
	}
	g.dirtyMu.Unlock()
	g.walMu.RUnlock()
	if n != 1 {
		t.Fatalf("the session is queued %d times for the writer", n)
	}
	saved := make(chan struct{})
	go func() { g.save(s); close(saved) }()
	select {
	case <-saved:
	case <-time.After(10 * time.Second):
		t.Fatal("the session's record cannot be written: saveMu held")
	}
}
