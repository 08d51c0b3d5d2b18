package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/nats-io/nats.go"
)

// meetingStore holds the first read of each key under prefix until a
// second reader of it comes (or 5 s pass): two sweepers then read the
// same revision of each record, and both go for it at once.
type meetingStore struct {
	store.Store
	prefix string
	mu     sync.Mutex
	first  map[string]chan struct{} // nil once met
}

func (m *meetingStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if strings.HasPrefix(key, m.prefix) {
		m.mu.Lock()
		ch, seen := m.first[key]
		switch {
		case !seen:
			ch = make(chan struct{})
			m.first[key] = ch
			m.mu.Unlock()
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
			}
		case ch != nil:
			close(ch)
			m.first[key] = nil
			m.mu.Unlock()
		default:
			m.mu.Unlock()
		}
	}
	return m.Store.Get(ctx, key)
}

// TestMediaLedgerDeadPeer: a node that dies (its lease left to expire)
// and never comes back leaves calls in rtpengine; once its lease expired
// the two survivors both sweep its ledger records, reading each at once,
// and each call is deleted in rtpengine exactly once, by one of them
// (the record claimed by compare-and-set), and every record goes (issue
// 14).
func TestMediaLedgerDeadPeer(t *testing.T) {
	addr, reqs := fakeNG(t)
	ctx := context.Background()
	e, err := natsstore.Start(ctx, &natsstore.EmbeddedOptions{Dir: t.TempDir(), Store: natsstore.Options{Memory: true, TTL: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	const ttl = time.Second
	start := func(name string, nc *nats.Conn) *cluster.Node {
		t.Helper()
		n, err := cluster.Start(ctx, nc, cluster.Options{Name: name, LeaseTTL: ttl, DirectoryTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The dead node has a connection of its own: closed first, its lease
	// is never given up, as with kill -9.
	nc3, err := nats.Connect("", nats.InProcessServer(e.Server()))
	if err != nil {
		t.Fatal(err)
	}
	n3 := start("n3", nc3)
	const calls = 3
	for i := range calls {
		rec, _ := json.Marshal(ledgerRecord{CallID: fmt.Sprintf("c%d@dead", i), FromTag: "ft", Addr: addr, Life: "gone"})
		if _, err := e.Create(ctx, ledgerKey("media.n3.", fmt.Sprintf("c%d@dead", i)), rec); err != nil {
			t.Fatal(err)
		}
	}
	met := &meetingStore{Store: e, prefix: "media.n3.", first: map[string]chan struct{}{}}
	var gs []*Gateway
	for _, name := range []string{"n1", "n2"} {
		node := start(name, e.Conn())
		t.Cleanup(node.Close)
		g, _ := newGatewayOpts(t, func(c *Config) {
			c.SIP.Listen.UDP, c.SIP.Domain = "127.0.0.1:0", "example.com"
			c.Media = rtpengine.Config{RTPEngine: []string{addr}, Timeout: time.Second, Retransmit: 200 * time.Millisecond, PingInterval: time.Hour}
		}, Options{Store: met, Cluster: node})
		gs = append(gs, g)
	}
	for _, g := range gs {
		waitFor(t, g.self()+" seeing n3", func() bool { return g.node.Alive("n3") })
	}
	nc3.Close()
	n3.Close()

	deletes := map[string]int{}
	total := func() int {
		n := 0
		for _, c := range deletes {
			n += c
		}
		return n
	}
	take := func() {
		for {
			select {
			case r := <-reqs:
				if !strings.Contains(r, "6:delete") {
					t.Fatalf("request to rtpengine %q, want deletes only", r)
				}
				_, id, _ := strings.Cut(r, "7:call-id")
				deletes[id[strings.Index(id, ":")+1:][:len("c0@dead")]]++
			default:
				return
			}
		}
	}
	waitFor(t, "the dead node's calls deleted", func() bool {
		take()
		keys, err := e.Keys(ctx, "media.n3.")
		return err == nil && len(keys) == 0 && total() >= calls
	})
	// Both survivors done: each has seen n3 down and finished its sweep.
	for _, g := range gs {
		waitFor(t, g.self()+"'s sweep of n3", func() bool {
			g.ledger.mu.Lock()
			busy := g.ledger.sweeping["n3"]
			g.ledger.mu.Unlock()
			return !g.node.Alive("n3") && !busy
		})
	}
	take()
	for i := range calls {
		if id := fmt.Sprintf("c%d@dead", i); deletes[id] != 1 {
			t.Errorf("call %s deleted %d times in rtpengine, want once: %v", id, deletes[id], deletes)
		}
	}
	if got := gs[0].ledger.swept.Load() + gs[1].ledger.swept.Load(); got != calls {
		t.Errorf("swept %d + %d, want %d in all", gs[0].ledger.swept.Load(), gs[1].ledger.swept.Load(), calls)
	}
}
