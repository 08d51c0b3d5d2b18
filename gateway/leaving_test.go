package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
	"github.com/nats-io/nats.go"
)

// enteredStore holds its updates while held, as heldStore does, and
// closes entered at the first update it holds.
type enteredStore struct {
	heldStore
	once    sync.Once
	entered chan struct{}
}

func (e *enteredStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	e.mu.Lock()
	held := e.held != nil
	e.mu.Unlock()
	if held {
		e.once.Do(func() { close(e.entered) })
	}
	return e.heldStore.Update(ctx, key, value, rev)
}

// TestClusterMessageToASessionMovingAway: bob's session leaves n1,
// alice's node, for n2, where his client resumes; n1 has let go (its
// last write made, the session out of its tables) and n2 has not yet
// taken the record over nor named itself in the directory. Alice's
// message meanwhile waits for n2 and reaches bob there. Before, n1 found
// bob nowhere (its directory view named n1 itself, which it skips, and
// so did the bucket) and answered alice 480 at once, with no warning in
// any log: likely the message lost once in test/cluster
// TestResumeOnAnotherNode (199 of 200 bodies).
func TestClusterMessageToASessionMovingAway(t *testing.T) {
	var a *peer
	_, b, p, nc, n2 := bobMovesFromN1(t, func(url string) {
		a = dial(t, url, protocol.SubprotocolOracle, nil)
		a.connect("alice@example.com")
	})
	messageToMovingBob(t, a, p, b.sid, deliverAsked(t, nc, "n2", b.sid), n2.lift)
}

// bobMovesFromN1 starts two gateways (n1's NATS connection nc, n2's
// store held by the test), runs first with n1's URL, connects bob on n1
// and resumes his session on n2 (p), held as n2 takes the record over:
// n1 has let it go, n2 has not taken it yet.
func bobMovesFromN1(t *testing.T, first func(url string)) (gs []*Gateway, b, p *peer, nc *nats.Conn, n2 *enteredStore) {
	t.Helper()
	n2 = &enteredStore{entered: make(chan struct{})}
	wraps := []func(store.Store) store.Store{
		func(s store.Store) store.Store { nc = s.(*natsstore.Embedded).Conn(); return s },
		func(s store.Store) store.Store { n2.Store = s; return n2 },
	}
	next := 0
	gs, urls := newClusterGatewaysOn(t, 2, func(s store.Store) store.Store { next++; return wraps[next-1](s) })
	t.Cleanup(n2.lift)
	if first != nil {
		first(urls[0])
	}
	b = dial(t, urls[0], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	b.c.CloseNow()
	p = resumeHeld(t, urls[1], n2, b.sid)
	if gs[0].lookup(b.sid) != nil {
		t.Fatal("n1 still has bob's session after letting go")
	}
	return gs, b, p, nc, n2
}

// TestClusterMessageToASessionMovingOn: bob's session moves from n2 to
// n3 while alice, on n1, sends him a message; n2 has let go, n3 has not
// yet taken the record over. n2 answers n1's relay "not owned" and names
// n3, which the record does not name yet: n1 asks n3, which is resuming
// bob, and waits for it (the test holds n3 until n1 asks it). Before, n1
// read the record (n2) and asked n2 again, six times within about half
// a second, then gave up and answered alice 480 while bob's resume was
// still under way (a takeover slow under load).
func TestClusterMessageToASessionMovingOn(t *testing.T) {
	n3 := &enteredStore{entered: make(chan struct{})}
	var nc *nats.Conn
	wraps := []func(store.Store) store.Store{
		func(s store.Store) store.Store { nc = s.(*natsstore.Embedded).Conn(); return s },
		func(s store.Store) store.Store { return s },
		func(s store.Store) store.Store { n3.Store = s; return n3 },
	}
	next := 0
	gs, urls := newClusterGatewaysOn(t, 3, func(s store.Store) store.Store { next++; return wraps[next-1](s) })
	t.Cleanup(n3.lift)
	b := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	for deadline := time.Now().Add(10 * time.Second); len(gs[0].node.Remote("bob@example.com")) == 0; <-time.After(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("n1 never saw bob's session on n2")
		}
	}
	b.c.CloseNow()
	p := resumeHeld(t, urls[2], n3, b.sid)
	messageToMovingBob(t, a, p, b.sid, deliverAsked(t, nc, "n3", b.sid), n3.lift)
}

// resumeHeld resumes bob's session sid on a socket to url, whose node's
// store st holds its updates, and returns once the node's takeover of
// the record is held: the previous owner has let go.
func resumeHeld(t *testing.T, url string, st *enteredStore, sid string) *peer {
	t.Helper()
	st.hold()
	p := dial(t, url, protocol.SubprotocolOracle, nil)
	writeBobsResume(p, sid)
	select {
	case <-st.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("bob's record never taken over")
	}
	return p
}

// writeBobsResume writes on p the connect that resumes bob's session
// sid (Oracle's resume headers: his connect, and the gateway's response).
func writeBobsResume(p *peer, sid string) {
	p.write(`{"control":{"type":"request","package_type":"register","session_id":"` + sid + `","version":"1.0"},"header":{"action":"connect","initiator":"bob@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`)
}

// deliverAsked is closed when a node asks node (over nc) to deliver a
// frame to session sid.
func deliverAsked(t *testing.T, nc *nats.Conn, node, sid string) <-chan struct{} {
	t.Helper()
	asked := make(chan struct{})
	once := sync.OnceFunc(func() { close(asked) })
	sub, err := nc.Subscribe("jsonrtc.node."+node+"."+kindDeliver, func(m *nats.Msg) {
		var req deliverReq
		if json.Unmarshal(m.Data, &req) == nil && req.Session == sid {
			once()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return asked
}

// messageToMovingBob has alice send bob a message while his session
// moves to the node p resumes it on, held until the relay asks that node
// (asked), then let go (lift): alice must get no answer before, and bob
// the message on p, whose 200 alice gets.
func messageToMovingBob(t *testing.T, a, p *peer, sid string, asked <-chan struct{}, lift func()) {
	t.Helper()
	answers := aliceSendsHi(t, a)
	select {
	case f := <-answers:
		unansweredYet(t, f)
	case <-asked:
	}
	lift()
	bobAnswersHi(t, p, sid, answers)
}

// aliceSendsHi has alice send bob "hi"; the channel gets her first frame
// after it (her message's answer), or is closed.
func aliceSendsHi(t *testing.T, a *peer) <-chan *protocol.Frame {
	t.Helper()
	answers := make(chan *protocol.Frame, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, data, err := a.c.Read(ctx); err == nil {
			f, _ := protocol.Decode(data)
			answers <- f
		}
		close(answers)
	}()
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: protocol.EncodePayload(protocol.MessagePayload{Body: "hi"}),
	})
	return answers
}

// waitsForBob returns once alice's message waits on g for bob's session
// sid (its client's resume), and fails the test if she gets an answer
// first (answers, aliceSendsHi's).
func waitsForBob(t *testing.T, g *Gateway, sid string, answers <-chan *protocol.Frame) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !g.hasWaiting(sid); {
		select {
		case f := <-answers:
			unansweredYet(t, f)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("alice's message never waited for bob's resume")
		}
	}
}

// unansweredYet fails the test with f, an answer alice got to her
// message before bob's session was where it went.
func unansweredYet(t *testing.T, f *protocol.Frame) {
	t.Helper()
	if f == nil {
		t.Fatal("alice's socket closed")
	}
	t.Fatalf("alice's message answered %s while bob's session moved, before reaching him", f.Marshal())
}

// bobAnswersHi has bob, resumed as session sid on p, read his connect's
// response and alice's "hi", and answer it 200, which alice must get
// (answers, aliceSendsHi's).
func bobAnswersHi(t *testing.T, p *peer, sid string, answers <-chan *protocol.Frame) {
	t.Helper()
	expect(t, p.read(), protocol.TypeResponse, protocol.ActionConnect)
	m := p.read()
	expect(t, m, protocol.TypeRequest, protocol.ActionSend)
	var body protocol.MessagePayload
	if err := protocol.DecodePayload(m.Payload, &body); err != nil || body.Body != "hi" {
		t.Fatalf("bob read %s, want alice's message", m.Marshal())
	}
	p.sid, p.seq = sid, 1 // bob's connect was his 1
	p.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200},
	})
	select {
	case f := <-answers:
		if f == nil || f.Control.Type != protocol.TypeResponse || f.Header.ResponseCode != 200 {
			t.Fatalf("alice's message answered %v, want bob's 200", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alice's message unanswered after bob's 200")
	}
}

// TestClusterWaitingFrameToASessionMovingAway: a frame waits on n1 for
// bob's session (its node was dead) as n1, which took the session for
// his client's resume, lets it go to n2, where his client resumes again;
// n2 has not taken the record over yet, which still names n1. The frame
// reaches bob on n2. Before, n1 read the record (itself), found no
// session in its tables and dropped the frame as for a session ended
// (the chaos test with node kills: three of its four 480s in one run, a
// message that had waited for its receiver's dead node).
func TestClusterWaitingFrameToASessionMovingAway(t *testing.T) {
	gs, b, p, nc, n2 := bobMovesFromN1(t, nil)
	asked := deliverAsked(t, nc, "n2", b.sid)
	trickle := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionTrickle, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{Candidates: "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host"}),
	}
	if _, err := gs[0].waitFor(b.sid, trickle, false, endpoint.Origin{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("n1 never asked n2 to deliver the waiting frame")
	}
	n2.lift()
	expect(t, p.read(), protocol.TypeResponse, protocol.ActionConnect)
	wantCandidate(t, p, "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host", 10*time.Second)
}

// TestClusterSessionBeingResumedHereFound: a session this node has taken
// over for its client's resume, not yet in its tables, is found by a
// message's lookup, and the message waits for the resume: whether the
// view names this node (a stray of its own) or the dead node it was
// taken from (the record names this node). Before, the lookup found
// nobody and the message got 480 (the chaos test with node kills: two
// of four 480s in a run).
func TestClusterSessionBeingResumedHereFound(t *testing.T) {
	gs, urls := newClusterGateways(t, 1)
	g := gs[0]
	b := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	s := g.lookup(b.sid)
	// The view names the session once the directory's write of it is
	// read back (a stray of its own, below).
	waitFor(t, "the view to name bob's session", func() bool { _, ok := g.node.Owner(b.sid); return ok })
	for i, view := range []string{"", "n9"} {
		if view != "" {
			g.node.Moved(cluster.Entry{Session: b.sid, Identity: "bob@example.com", Node: view})
		}
		unlock := g.resuming.lock(b.sid)
		g.remove(s)
		eps, err := directory{g}.FindHeld("bob@example.com")
		if err != nil || len(eps) != 1 || eps[0].ID() != b.sid {
			unlock()
			t.Fatalf("view naming %q: bob's session being resumed here found as %v (%v), want it", view, eps, err)
		}
		cand := "a=candidate:" + strconv.Itoa(i) + " 1 udp 1 192.0.2.1 1000 typ host"
		sent := make(chan error, 1)
		go func() {
			_, err := eps[0].Send(&protocol.Frame{
				Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
				Header:  protocol.Header{Action: protocol.ActionTrickle, Initiator: "alice@example.com", Target: "bob@example.com"},
				Payload: protocol.EncodePayload(protocol.CallPayload{Candidates: cand}),
			}, false)
			sent <- err
		}()
		if err := g.add(s); err != nil {
			t.Fatal(err)
		}
		unlock()
		if err := <-sent; err != nil {
			t.Fatalf("view naming %q: frame to bob's session being resumed: %v", view, err)
		}
		wantCandidate(t, b, cand, 5*time.Second)
	}
}

// TestClusterMessageToASessionLetGoInVain: n1 lets bob's session go to a
// takeover n2 asked for and never completes (its resume given up on
// before n1 answered), so the record still names n1 and no node has the
// session. Alice, on n1, sends bob a message: it waits for his client's
// resume, which lands on n2 a moment later, and reaches him there.
// Before, n1 found the record naming itself and no session in its
// tables, took that for an end, and answered alice 480 at once (the
// chaos test with node kills: two 480s in a run, 70 ms before the
// client's resume on a third node).
func TestClusterMessageToASessionLetGoInVain(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	b.c.CloseNow()
	s := gs[0].lookup(b.sid)
	waitFor(t, "bob's socket gone on n1", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.conn == nil
	})
	req, _ := json.Marshal(sessionReq{Session: b.sid, Owner: "n2"})
	if rep := string(gs[0].onTakeover(req)); !strings.HasPrefix(rep, "ok") {
		t.Fatalf("n1 answered the takeover %q, want ok", rep)
	}
	answers := aliceSendsHi(t, a)
	waitsForBob(t, gs[0], b.sid, answers)
	p := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	writeBobsResume(p, b.sid)
	bobAnswersHi(t, p, b.sid, answers)
}

// keyFailingStore fails the updates of the key that ends in key, while
// it is set.
type keyFailingStore struct {
	store.Store
	key atomic.Pointer[string]
}

func (f *keyFailingStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if k := f.key.Load(); k != nil && strings.HasSuffix(key, *k) {
		return 0, errors.New("test: the store does not answer")
	}
	return f.Store.Update(ctx, key, value, rev)
}

// TestClusterMessageOnTheAskerOfATakeoverThatFailed: bob's resume on n2
// has n1 let his session go, then fails to take the record over (n2's
// store takes no write of it within the resume's budget), so the record
// still names n1 and no node has the session. Alice, on n2, sends bob a
// message: it waits for his client's next resume, on n1, and reaches him
// there. Before, n1 named n2 (where it had let the session go), n2
// found no session in its tables and took that for an end: alice got 480
// at once (the chaos test with node kills, a takeover whose record read
// timed out).
func TestClusterMessageOnTheAskerOfATakeoverThatFailed(t *testing.T) {
	n2 := &keyFailingStore{}
	next := 0
	gs, urls := newClusterGatewaysOn(t, 2, func(s store.Store) store.Store {
		if next++; next == 2 {
			n2.Store = s
			return n2
		}
		return s
	})
	b := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	a := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	waitFor(t, "n2 to see bob's session on n1", func() bool { return len(gs[1].node.Remote("bob@example.com")) > 0 })
	b.c.CloseNow()
	n2.key.Store(&b.sid)
	gs[1].resumeWait.Store(int64(time.Second))
	p := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	writeBobsResume(p, b.sid)
	if code := p.closeCode(); code != websocket.StatusTryAgainLater {
		t.Fatalf("bob's resume on n2 closed with %d, want 1013 (resume again)", code)
	}
	if gs[0].lookup(b.sid) != nil {
		t.Fatal("n1 did not let bob's session go")
	}
	n2.key.Store(nil)
	answers := aliceSendsHi(t, a)
	waitsForBob(t, gs[1], b.sid, answers)
	p = dial(t, urls[0], protocol.SubprotocolOracle, nil)
	writeBobsResume(p, b.sid)
	bobAnswersHi(t, p, b.sid, answers)
}
