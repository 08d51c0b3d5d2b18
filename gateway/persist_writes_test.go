package gateway

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
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
	// The connects' writes are done before their responses
	// (TestConnectWritesItsRecordOnce).
	for name, p := range map[string]*peer{"alice": a, "bob": b} {
		if got := st.of(recordKey(p.sid)) - before[p.sid]; got > n {
			t.Errorf("%s: %d record writes for %d messages, want at most %d", name, got, n, n)
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

// TestConnectWritesItsRecordOnce: a new session's record is written once
// at its connect, by the write that releases the response, and, in a
// cluster, the session is in the directory when its client hears it is
// connected. A save after the response's queueing wrote it again (the
// writer's round, asked for by the queueing, wrote it before or after),
// and the round could release the response before the directory write.
// The error a message to nobody gets is the next write: the writes of
// the connect are done by the time it is read.
func TestConnectWritesItsRecordOnce(t *testing.T) {
	for _, clustered := range []bool{false, true} {
		name := "alone"
		if clustered {
			name = "cluster"
		}
		t.Run(name, func(t *testing.T) {
			var st *countingStore
			wrap := func(s store.Store) store.Store {
				if st == nil {
					st = &countingStore{Store: s, writes: map[string]int{}}
					return st
				}
				return s
			}
			var other *Gateway // a node that looks alice up
			var url string
			if clustered {
				gs, urls := newClusterGatewaysOn(t, 2, wrap)
				other, url = gs[1], urls[0]
			} else {
				_, url = newGatewayOpts(t, nil, Options{Store: wrap(store.NewMemory())})
			}
			for i := range 3 {
				a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
				a.connect("alice@example.com")
				if clustered {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					found, err := other.node.Lookup(ctx, "alice@example.com")
					cancel()
					if err != nil {
						t.Fatal(err)
					}
					if !slices.ContainsFunc(found, func(e cluster.Entry) bool { return e.Session == a.sid }) {
						t.Errorf("connect %d: the client heard it was connected before its session was in the directory", i)
					}
				}
				a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
					Header: protocol.Header{Action: protocol.ActionSend, Target: "nobody@example.com"}, Payload: []byte(`{"content_type":"text/plain","body":"hi"}`)})
				if r := a.read(); r.Control.Type != protocol.TypeError {
					t.Fatalf("connect %d: a message to nobody got %s", i, r.Marshal())
				}
				if n := st.of(recordKey(a.sid)); n != 2 {
					t.Errorf("connect %d: %d record writes for the connect and one error, want 2", i, n)
				}
			}
		})
	}
}
