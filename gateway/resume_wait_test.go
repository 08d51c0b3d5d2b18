package gateway

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// electingStore answers nothing while down is set, and fails its next
// failUpdates updates: a replicated bucket electing a leader.
type electingStore struct {
	store.Store
	down        atomic.Bool
	failUpdates atomic.Int32
	updatesDown atomic.Bool
}

var errNoLeader = errors.New("nats: JetStream system temporarily unavailable")

func (e *electingStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if e.down.Load() {
		return nil, 0, errNoLeader
	}
	return e.Store.Get(ctx, key)
}

func (e *electingStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if e.updatesDown.Load() || e.failUpdates.Add(-1) >= 0 {
		return 0, errNoLeader
	}
	return e.Store.Update(ctx, key, value, rev)
}

// TestResumeWaitsForTheStore: a resume that reaches a gateway while the
// store does not answer (a JetStream leader election) is not refused,
// which would start the client anew and lose a session whose record is
// there: reads and the takeover's write are made again, backing off,
// and when the store stays silent past the wait the socket closes with
// 1013 for the client to resume again. A refused resume means the
// record is gone.
func TestResumeWaitsForTheStore(t *testing.T) {
	st := &electingStore{Store: store.NewMemory()}
	_, url1 := newGatewayOpts(t, nil, Options{Store: st})
	g2, url2 := newGatewayOpts(t, nil, Options{Store: st})
	g2.resumeWait.Store(int64(500 * time.Millisecond))
	a := dial(t, url1, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	resume := `{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`

	// Silent past the wait: 1013, not a new session.
	st.down.Store(true)
	b := dial(t, url2, protocol.SubprotocolOracle, nil)
	b.write(resume)
	if code := b.closeCode(); code != 1013 {
		t.Fatalf("resume while the store is silent: closed with %d, want 1013", code)
	}
	st.down.Store(false)

	// The takeover's write fails a few times, then lands: resumed.
	st.failUpdates.Store(3)
	c := dial(t, url2, protocol.SubprotocolOracle, nil)
	c.write(resume)
	r := c.read()
	if r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
		t.Fatalf("resume answered %s, want the session %s resumed", r.Marshal(), a.sid)
	}
}

// TestClusterLiveSocketKeepsSessionHere: the same node gets a resume of
// a session whose socket there answers a ping: a connect its client
// gave up on, read late (under node kills, a node slow in an election).
// It closes with 1013 and the client's socket stays; taken, it closed
// that socket with 4000 and the session ended (the cluster chaos test:
// 14 of 40 sessions).
func TestClusterLiveSocketKeepsSessionHere(t *testing.T) {
	gs, urls := newClusterGateways(t, 1)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	stillOpen := a.answering()
	stale := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	stale.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`)
	if code := stale.closeCode(); code != 1013 {
		t.Fatalf("a stale resume closed with %d, want 1013", code)
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("the session is gone")
	}
	stillOpen()
}

// TestClusterOutgrownConnectKeepsSession: a resume of a session that
// has since taken frames its client sent after that connect (its csuw)
// is a connect the client gave up on, read late: it closes with 1013,
// on the session's own node and on another, whether or not the live
// socket answers a ping (here it does not: the client is not reading).
// Refused as a resume that does not fit, it ended the session with 4000
// "replaced" on its own node, and started a session nobody uses on
// another (the cluster chaos test: clients closed with 4000).
func TestClusterOutgrownConnectKeepsSession(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	// The connect the client gave up on: its last frame sent was 1.
	connect := `{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`
	// A frame the client sent after it, on the socket it went on with.
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":2,"correlation_id":"c2"},"header":{"action":"send","target":"nobody@example.com"},"payload":{"body":"hi"}}`)
	if r := a.read(); r.Control.CorrelationID != "c2" {
		t.Fatalf("send answered %s", r.Marshal())
	}
	// And one made after that frame, before the client acknowledged
	// the answer it got (sequence 2).
	acked := strings.Replace(connect, `"csuw":1`, `"csuw":2`, 1)
	a.write(`{"control":{"type":"acknowledgement","ack_sequence":2}}`)
	a.pingPong() // the ack is read
	gs[0].save(gs[0].lookup(a.sid))
	for i, url := range urls {
		for _, c := range []string{connect, acked} {
			stale := dial(t, url, protocol.SubprotocolOracle, nil)
			stale.write(c)
			if code := stale.closeCode(); code != 1013 {
				t.Fatalf("n%d: an outgrown resume %s closed with %d, want 1013", i+1, c, code)
			}
		}
	}
	s := gs[0].lookup(a.sid)
	if s == nil {
		t.Fatal("the session ended")
	}
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		t.Fatal("the session ended")
	}
	a.pingPong() // still open
}

// TestClusterFramesWaitForTheStore: in a cluster, a frame whose record
// write fails (the bucket electing a leader) does not go out unstored:
// its session may resume on another node from the record, which would
// then be behind what its client got, and the resume refused (the
// cluster chaos test: sessions lost under node kills). It waits in the
// queue and goes out once written.
func TestClusterFramesWaitForTheStore(t *testing.T) {
	st := &electingStore{}
	g, a := aliceOnNode(t, func(s store.Store) store.Store { st.Store = s; return st })
	got := make(chan *protocol.Frame, 1)
	go func() { got <- a.read() }()
	st.updatesDown.Store(true)
	seq, err := g.lookup(a.sid).Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-got:
		t.Fatalf("frame %d went out while the store failed its write", f.Control.Sequence)
	case <-time.After(300 * time.Millisecond): // a few writer rounds
	}
	st.updatesDown.Store(false)
	if f := <-got; f.Control.Sequence != seq {
		t.Fatalf("alice read %s, want sequence %d", f.Marshal(), seq)
	}
	r, _, err := g.restore(a.sid)
	if err != nil || r == nil || r.State.NextSeq <= seq {
		t.Fatalf("the record (%v) does not hold frame %d", err, seq)
	}
}

// TestClusterRecordBehindResumesAgain: a resume on another node whose
// client has a frame the record read does not (a read behind the last
// write) closes with 1013 for the client to resume again, and the
// session stays; before, it was refused and the client's session lost
// (the cluster chaos test: "cslr 52 is outside the retained window").
func TestClusterRecordBehindResumesAgain(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	gs[0].save(gs[0].lookup(a.sid))
	// The client claims frame 2, which the record never had.
	c := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	c.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":2,"cslw":2,"csuw":1},"payload":{}}`)
	if code := c.closeCode(); code != 1013 {
		t.Fatalf("a resume ahead of the record closed with %d, want 1013", code)
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("the session is gone from n1")
	}
}
