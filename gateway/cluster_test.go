package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
)

// newClusterGateways runs n gateways in this process as the nodes of a
// cluster: one embedded NATS server (a real JetStream, not clustered)
// whose store and buckets they share, each with a cluster.Node of its
// own name.
func newClusterGateways(t *testing.T, n int) ([]*Gateway, []string) {
	t.Helper()
	return newClusterGatewaysOn(t, n, nil)
}

// aliceOnNode runs one node of a cluster on the store wrap makes of its
// own and connects alice to it.
func aliceOnNode(t *testing.T, wrap func(store.Store) store.Store) (*Gateway, *peer) {
	t.Helper()
	gs, urls := newClusterGatewaysOn(t, 1, wrap)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	return gs[0], a
}

// newClusterGatewaysOn is newClusterGateways with each gateway's store
// wrapped by wrap (nil: none).
func newClusterGatewaysOn(t *testing.T, n int, wrap func(store.Store) store.Store) ([]*Gateway, []string) {
	t.Helper()
	return newClusterGatewaysMod(t, n, wrap, nil)
}

// newClusterGatewaysMod is newClusterGatewaysOn with each gateway's
// configuration changed by mod (nil: none).
func newClusterGatewaysMod(t *testing.T, n int, wrap func(store.Store) store.Store, mod func(*Config)) ([]*Gateway, []string) {
	t.Helper()
	ctx := context.Background()
	e, err := natsstore.Start(ctx, &natsstore.EmbeddedOptions{Dir: t.TempDir(), Store: natsstore.Options{Memory: true, TTL: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close) // after the gateways' cleanups
	var gs []*Gateway
	var urls []string
	for i := range n {
		node, err := cluster.Start(ctx, e.Conn(), cluster.Options{Name: fmt.Sprintf("n%d", i+1), LeaseTTL: 3 * time.Second, DirectoryTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(node.Close)
		var st store.Store = e
		if wrap != nil {
			st = wrap(e)
		}
		g, url := newGatewayOpts(t, mod, Options{Store: st, Cluster: node})
		gs, urls = append(gs, g), append(urls, url)
	}
	// As test/cluster does: every node sees the others before a test
	// starts (docs/cluster.md "Known defects": a node that has not read
	// a peer's lease yet can miss that peer's sessions).
	for _, g := range gs {
		for deadline := time.Now().Add(10 * time.Second); len(g.node.Nodes()) < n; <-time.After(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %v after 10s, want %d nodes", g.node.Name(), g.node.Nodes(), n)
			}
		}
	}
	return gs, urls
}

// TestClusterTakeoverRace: two resumes of one session arrive at two
// other nodes at once. As on one node, the later one wins: ownership
// moves by compare-and-set on the record, each owner letting go (close
// 4000) before the next takes over, so that at the end exactly one node
// serves the session, the one the record names.
func TestClusterTakeoverRace(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	resume := `{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`
	p2, p3 := dial(t, urls[1], protocol.SubprotocolOracle, nil), dial(t, urls[2], protocol.SubprotocolOracle, nil)
	// A resume overtaken by the other may lose its socket (4000) before
	// its answer is written: either is right, and the close is kept.
	var wg sync.WaitGroup
	closed := map[*peer]websocket.StatusCode{}
	var mu sync.Mutex
	for _, p := range []*peer{p2, p3} {
		p.write(resume)
		wg.Go(func() {
			// Within the resume's budget (8 s): the owner's probe of a
			// silent socket takes 3 s, and a loser may ask twice.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, data, err := p.c.Read(ctx)
			if err != nil {
				mu.Lock()
				closed[p] = websocket.CloseStatus(err)
				mu.Unlock()
				return
			}
			if r, err := protocol.Decode(data); err != nil || r.Control.SessionID != a.sid {
				t.Errorf("resume answered %s (%v)", data, err)
			}
		})
	}
	wg.Wait()
	// Silent (it does not read): 1013, should its client be there
	// (TestTakeoverOfASilentSocket).
	if code := a.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("the first owner's socket closed with %d, want 1013", code)
	}
	var serving []string
	// Overtaken between its read and its attach, a resume closes with
	// 1013 (resume again: serve.go handshake); after, with 4000.
	for _, code := range closed {
		if code != 4000 && code != 1013 {
			t.Fatalf("a resume's socket closed with %d before its answer, want 4000 or 1013", code)
		}
	}
	for i, g := range gs {
		if g.lookup(a.sid) != nil {
			serving = append(serving, fmt.Sprintf("n%d", i+1))
		}
	}
	if len(serving) != 1 || serving[0] == "n1" {
		t.Fatalf("served by %v, want one of n2, n3", serving)
	}
	loser := p2
	if serving[0] == "n2" {
		loser = p3
	}
	code, ok := closed[loser]
	if !ok {
		code = loser.closeCode()
	}
	if code != 4000 && code != 1013 {
		t.Fatalf("the overtaken resume's socket closed with %d, want 4000 or 1013", code)
	}
	data, _, err := gs[0].store.Get(context.Background(), recordKey(a.sid))
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || r.Owner != serving[0] {
		t.Fatalf("record owner %q (%v), want %s", r.Owner, err, serving[0])
	}
}

// TestClusterStaleOwnerLetsGo: a node that missed a takeover (the new
// owner took the record without its release: a partition) finds out at
// its next write, which fails the compare-and-set: it lets go of the
// session (socket closed with 1013: the client, should it be on it,
// resumes again where the session went; 4000 ended its session, the
// cluster chaos test when a stalled machine let live leases expire)
// rather than write over the record or end the session toward its
// peers.
func TestClusterStaleOwnerLetsGo(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	stale := gs[0].lookup(a.sid)
	takeBehindItsBack(t, gs[1], a.sid)
	// n1 sends alice a frame: its write ahead fails, and it lets go
	// (unless an out-of-line write of its own found the takeover first).
	stale.Send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "x"},
		Header: protocol.Header{Action: protocol.ActionShutdown}}, false)
	if code := a.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("stale owner's socket closed with %d, want 1013", code)
	}
	data, _, err := gs[0].store.Get(context.Background(), recordKey(a.sid))
	if err != nil {
		t.Fatal(err)
	}
	var got record
	if err := json.Unmarshal(data, &got); err != nil || got.Owner != "n2" {
		t.Fatalf("record owner %q (%v), want n2", got.Owner, err)
	}
}

// takeBehindItsBack has g take session sid's record over behind its
// owner's back, by compare-and-set from a fresh read until it wins, as
// a resume does (resumeStored): the owner writes the record out of line
// after the connect (the presence share its session's start exports),
// and one such write between the read and the compare-and-set failed
// the takeover here.
func takeBehindItsBack(t *testing.T, g *Gateway, sid string) {
	t.Helper()
	waitFor(t, g.self()+"'s takeover", func() bool {
		r, rev, err := g.restore(sid)
		if err != nil || r == nil {
			t.Fatal(r, err)
		}
		err = g.own(g.sessionOf(r.Identity, r.Oracle, r.State), r, rev)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			t.Fatal(err)
		}
		return err == nil
	})
}

// TestClusterEndLeavesATakenRecord: a copy of a session that ends (its
// resume timeout) after another node took its record over behind its
// back leaves the record to that node. Before, it deleted the record,
// and the session living on there ended as superseded at its next write
// (test/cluster TestClusterPartition in CI: the minority's copy of
// carol's session timed out as the partition healed, and carol, resumed
// on the majority, lost her session).
func TestClusterEndLeavesATakenRecord(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	a.c.CloseNow()
	stale := gs[0].lookup(a.sid)
	takeBehindItsBack(t, gs[1], a.sid)
	stale.end(reasonResumeTimeout)
	r, _, err := gs[0].restore(a.sid)
	if err != nil || r == nil || r.Owner != "n2" {
		t.Fatalf("after n1's copy ended, the record is %+v (%v), want n2's", r, err)
	}
}

// TestClusterMovedSwept: a session taken over by another node stays
// known here while a call hosted here names it; once its record is gone
// without its end being heard of (its new owner died), the sweep ends
// the call toward the other party and forgets it.
func TestClusterMovedSwept(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	b := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	establish(t, a, b) // hosted on n1
	gs[0].lookup(a.sid).moveTo("n2", true)
	if code := a.closeCode(); code != 4000 {
		t.Fatalf("socket closed with %d, want 4000", code)
	}
	gs[0].mu.Lock()
	moved := gs[0].moved[a.sid] != nil
	gs[0].mu.Unlock()
	if !moved || gs[0].Stats().Calls != 1 {
		t.Fatalf("moved %v, %d calls: the call hosted here lost its leg", moved, gs[0].Stats().Calls)
	}
	gs[0].sweepMoved() // the record is there: nothing changes
	if gs[0].Stats().Calls != 1 {
		t.Fatal("a moved session with a record was swept")
	}
	if err := gs[0].store.Delete(context.Background(), recordKey(a.sid)); err != nil {
		t.Fatal(err)
	}
	gs[0].sweepMoved()
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
	gs[0].mu.Lock()
	defer gs[0].mu.Unlock()
	if gs[0].moved[a.sid] != nil {
		t.Fatal("the swept session is still known")
	}
}

// TestClusterStaleResumeRefused: a takeover asked for a connect that the
// owner's live session has outgrown (the client sent more since: a
// connect it gave up on, read late by another node) is refused, and the
// socket the client uses stays open; a takeover for a connect that
// matches the live state is honoured (1013 to the socket, silent here).
// Without the check the
// stale connect closed the live socket with 4000, which ends the
// session at the client (TestClusterChaos found it).
func TestClusterStaleResumeRefused(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	stale := protocol.Header{Action: protocol.ActionConnect, Initiator: "alice@example.com",
		CSLR: protocol.Seq(1), CSLW: protocol.Seq(2), CSUW: protocol.Seq(1)}
	// A request processed after the stale connect was sent.
	a.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":2,"correlation_id":"c2"},"header":{"action":"send","target":"nobody@example.com"},"payload":{"body":"hi"}}`)
	if r := a.read(); r.Control.CorrelationID != "c2" {
		t.Fatalf("send answered %s", r.Marshal())
	}
	take := func(h protocol.Header) string {
		req, _ := json.Marshal(sessionReq{Session: a.sid, Owner: "n2", Resume: &h})
		return string(gs[0].onTakeover(req))
	}
	if got := take(stale); got != refusedStale {
		t.Fatalf("stale takeover answered %q", got)
	}
	a.pingPong() // still open
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("n1 let go of the session on a stale takeover")
	}
	fresh := stale
	fresh.CSUW = protocol.Seq(2)
	if got := take(fresh); !strings.HasPrefix(got, "ok") {
		t.Fatalf("takeover answered %q", got)
	}
	if code := a.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("socket closed with %d, want 1013 (silent: TestTakeoverOfASilentSocket)", code)
	}
}

// TestClusterLiveSocketKeepsSession: a takeover asked while the
// session's socket here answers a WebSocket ping is refused, even for a
// connect that matches the live state: the client drops a socket before
// it dials another, so the connect is one it gave up on (the socket
// killed mid-resume, the other node slow to read it). Honoured, it
// closed the socket the client uses with 4000 (TestClusterChaos).
func TestClusterLiveSocketKeepsSession(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	// The client reads, as every client does: it answers pings.
	stillOpen := a.answering()
	h := protocol.Header{Action: protocol.ActionConnect, Initiator: "alice@example.com",
		CSLR: protocol.Seq(1), CSLW: protocol.Seq(2), CSUW: protocol.Seq(1)}
	req, _ := json.Marshal(sessionReq{Session: a.sid, Owner: "n2", Resume: &h})
	if got := string(gs[0].onTakeover(req)); got != refusedStale {
		t.Fatalf("takeover of a session whose socket answers: %q", got)
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("n1 let go of a session whose socket answers")
	}
	stillOpen()
}

// TestClusterTakeoverAfterReattach: a takeover that found the session
// with no socket here, and a resume of it here that attaches the
// client's socket before the session moves (two connects of one client
// at once, the other node's the one it gave up on): the session stays
// and the socket stays open. Moved, that socket closed with 4000, which
// ends the session at the client (the cluster chaos test: a socket
// closed 4 ms after its resume).
func TestClusterTakeoverAfterReattach(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	s := gs[0].lookup(a.sid)
	a.c.CloseNow()
	waitFor(t, "the socket's loss", func() bool { l, _ := s.probe(); return l == nil })
	// The takeover probes: no socket.
	probed, err := s.probe()
	if err == nil || probed != nil {
		t.Fatalf("probe found %v, %v", probed, err)
	}
	// The client's resume here attaches its socket.
	a2 := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`)
	if r := a2.read(); r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
		t.Fatalf("resume answered %s", r.Marshal())
	}
	if got := s.moveAway("n2", true, true, probed, false); got != moveReattached {
		t.Fatalf("move after a reattach: %v, want moveReattached", got)
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("n1 let go of the session")
	}
	a2.pingPong() // still open
}

// TestClusterAcknowledgedResumeOutgrowsConnect: a takeover asked for a
// connect made before the client's resume here (its cslr below the
// connect response the client has acknowledged since) is refused, even
// though the socket does not answer the owner's ping in time (a slow
// client on a loaded machine: here it does not read). Honoured, it
// closed the client's socket with 4000 (the cluster chaos test at 40
// sessions: the probe's "context deadline exceeded", then 4000).
func TestClusterAcknowledgedResumeOutgrowsConnect(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	a.c.CloseNow()
	// The connect it then made elsewhere, read late: it had received 1.
	h := protocol.Header{Action: protocol.ActionConnect, Initiator: "alice@example.com",
		CSLR: protocol.Seq(1), CSLW: protocol.Seq(2), CSUW: protocol.Seq(1)}
	// Its resume here, whose response (2) it acknowledges.
	a2 := dial(t, urls[0], protocol.SubprotocolJSONrtc, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`)
	r := a2.read()
	if r.Control.Type != protocol.TypeResponse || r.Control.SessionID != a.sid {
		t.Fatalf("resume answered %s", r.Marshal())
	}
	a2.write(`{"control":{"type":"acknowledgement","ack_sequence":` + strconv.FormatUint(r.Control.Sequence, 10) + `}}`)
	a2.pingPong() // the ack is read
	req, _ := json.Marshal(sessionReq{Session: a.sid, Owner: "n2", Resume: &h})
	if got := string(gs[0].onTakeover(req)); got != refusedStale {
		t.Fatalf("takeover for a connect before the resume here: %q", got)
	}
	if gs[0].lookup(a.sid) == nil {
		t.Fatal("n1 let go of the session")
	}
	a2.pingPong() // still open
}

// answering has p read, as every client does, so that it answers
// pings; the function it returns fails the test if p's socket closed
// meanwhile, and stops the reading.
func (p *peer) answering() func() {
	ctx, cancel := context.WithCancel(context.Background())
	read := make(chan error, 1)
	go func() { _, _, err := p.c.Read(ctx); read <- err }()
	return func() {
		p.t.Helper()
		defer cancel()
		select {
		case err := <-read:
			p.t.Errorf("the client's socket: %v", err)
			return
		default:
		}
		cancel()
		<-read
	}
}
