package gateway

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// countingStore counts the writes of each key, and tells wrote (if
// set) of each write made.
type countingStore struct {
	store.Store
	mu     sync.Mutex
	writes map[string]int
	wrote  chan string
}

func (c *countingStore) count(key string) {
	c.mu.Lock()
	c.writes[key]++
	c.mu.Unlock()
}

func (c *countingStore) done(key string) {
	select {
	case c.wrote <- key: // (nil: nobody listens)
	default:
	}
}

func (c *countingStore) of(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes[key]
}

func (c *countingStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	c.count(key)
	defer c.done(key)
	return c.Store.Create(ctx, key, value)
}

func (c *countingStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	c.count(key)
	defer c.done(key)
	return c.Store.Update(ctx, key, value, rev)
}

// TestRelayedMessageWritesEachSessionOnce: a message and its delivery
// report cost one record write of each session, the one that releases
// the frame sent to it (the relay to the target, the report to the
// sender). The state that processed the client's frame waits for the
// frame that acknowledges it: written on its own too, a round trip
// cost four writes, which a cluster replicates three times
// (docs/benchmarks.md, "Cluster").
func TestRelayedMessageWritesEachSessionOnce(t *testing.T) {
	st := &countingStore{Store: store.NewMemory(), writes: map[string]int{}}
	// (newGatewayOpts sends no standalone acknowledgement: each would be
	// a write of its own.)
	_, url := newGatewayOpts(t, nil, Options{Store: st})
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	before := map[string]int{a.sid: st.of(recordKey(a.sid)), b.sid: st.of(recordKey(b.sid))}
	const n = 5
	for i := range n {
		a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Target: "bob@example.com"}, Payload: []byte(`{"content_type":"text/plain","body":"hi"}`)})
		m := b.read()
		if m.Header.Action != protocol.ActionSend || m.Control.Type != protocol.TypeRequest {
			t.Fatalf("message %d: bob got %s", i, m.Marshal())
		}
		b.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.Control.CorrelationID},
			Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 200}})
		r := a.read()
		if r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
			t.Fatalf("message %d: alice got %s", i, r.Marshal())
		}
		if r.Control.AckSequence != a.seq {
			t.Fatalf("message %d: the report acknowledges %d, want %d", i, r.Control.AckSequence, a.seq)
		}
	}
	// One more than n: a round of the writer may still have been due
	// from the connect (a save does not take a session off its queue).
	for name, p := range map[string]*peer{"alice": a, "bob": b} {
		if got := st.of(recordKey(p.sid)) - before[p.sid]; got > n+1 {
			t.Errorf("%s: %d record writes for %d messages, want at most %d", name, got, n, n+1)
		}
	}
}

// TestUnansweredFramesWritten: client frames that nothing answers (no
// frame acknowledges them before session.ack_delay) are written once
// maxUnsaved of them are processed: a resend after a kill stays within
// the relays a receiver keeps per sender.
func TestUnansweredFramesWritten(t *testing.T) {
	st := &countingStore{Store: store.NewMemory(), writes: map[string]int{}, wrote: make(chan string, 100)}
	g, url := newGatewayOpts(t, nil, Options{Store: st})
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	s := g.lookup(a.sid)
	// A response to nothing is processed and answered by nothing.
	answer := func() {
		a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: "nothing"},
			Header: protocol.Header{Action: protocol.ActionSend, ResponseCode: 200}})
	}
	for range maxUnsaved - 1 {
		answer()
	}
	a.pingPong() // the frames before it are processed
	s.mu.Lock()
	unsaved := s.unsaved
	s.mu.Unlock()
	if unsaved != maxUnsaved-1 {
		t.Fatalf("%d frames unsaved, want %d", unsaved, maxUnsaved-1)
	}
	answer()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case k := <-st.wrote:
			if k != recordKey(a.sid) {
				continue
			}
			s.mu.Lock()
			unsaved = s.unsaved
			s.mu.Unlock()
			if unsaved == 0 {
				return
			}
		case <-timeout:
			t.Fatalf("%d frames processed and not written", maxUnsaved)
		}
	}
}
