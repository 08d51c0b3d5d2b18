package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

const (
	offer  = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
	answer = "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
)

// TestMessagingAcrossNodes: a message from a session on one node reaches
// the target's session on another, and its delivery report comes back;
// both ways, and to a target with sessions on two other nodes.
func TestMessagingAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0), func(o *client.Options) { o.AutoAcceptMessages = true })
	bob := dial(t, "bob@example.com", urls(nodes, 1), func(o *client.Options) { o.AutoAcceptMessages = true })
	// n1 learns of bob's session on n2 from the directory's watch:
	// milliseconds, seconds on a loaded machine, when a send meanwhile
	// is answered 480 (docs/cluster.md "Limits": a session connected a
	// moment ago on another node is not seen yet). Sent again until 200,
	// within 10 s.
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "hi bob")
		if err == nil && code == 200 {
			break
		}
		if err != nil || code != 480 || time.Now().After(deadline) {
			t.Fatalf("alice (n1) to bob (n2): %d, %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ev := event(t, bob, client.EventMessage); ev.Message.Body != "hi bob" || ev.Message.From != "alice@example.com" {
		t.Fatalf("bob got %+v", ev.Message)
	}
	if code, err := bob.Send(tctx(t), "alice@example.com", "text/plain", "hi alice"); err != nil || code != 200 {
		t.Fatalf("bob (n2) to alice (n1): %d, %v", code, err)
	}
	if ev := event(t, alice, client.EventMessage); ev.Message.Body != "hi alice" {
		t.Fatalf("alice got %+v", ev.Message)
	}
	// Bob's second session on n3: both of his sessions get the next one,
	// once n1's view of the directory has it (a watch: milliseconds, more
	// under the race detector). Until then a message reaches bob on n2
	// alone: probes, until one reaches n3.
	bob3 := dial(t, "bob@example.com", urls(nodes, 2), func(o *client.Options) { o.AutoAcceptMessages = true })
	for i := 0; ; i++ {
		if _, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "probe"); err != nil {
			t.Fatal(err)
		}
		event(t, bob, client.EventMessage)
		if got := probed(bob3); got {
			break
		}
		if i == 100 {
			t.Fatal("bob's session on n3 never reached from n1")
		}
	}
	if code, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "both"); err != nil || code != 200 {
		t.Fatalf("alice to bob's two sessions: %d, %v", code, err)
	}
	for _, c := range []*client.Client{bob, bob3} {
		for {
			ev := event(t, c, client.EventMessage)
			if ev.Message.Body == "both" {
				break
			}
			if ev.Message.Body != "probe" {
				t.Fatalf("bob's session got %+v", ev.Message)
			}
		}
	}
	// An identity with no session anywhere is offline or unknown.
	if _, err := alice.Send(tctx(t), "nobody@example.com", "text/plain", "x"); err == nil {
		t.Fatal("a message to nobody was delivered")
	}
}

// probed reports whether c has a message event waiting (a probe).
func probed(c *client.Client) bool {
	select {
	case ev := <-c.Events():
		return ev.Kind == client.EventMessage
	case <-time.After(100 * time.Millisecond):
		return false
	}
}

// call places a call from a to b (on other nodes) and returns both ends
// once established.
func call(t *testing.T, a, b *client.Client) (*client.Call, *client.Call) {
	t.Helper()
	out, err := a.StartCall(tctx(t), b.Identity(), offer)
	if err != nil {
		t.Fatal(err)
	}
	in := incoming(t, a, b)
	if in.SDP != offer || in.Call.Peer() != a.Identity() {
		t.Fatalf("incoming call from %q with SDP %q", in.Call.Peer(), in.SDP)
	}
	if err := in.Call.Ring(tctx(t)); err != nil {
		t.Fatal(err)
	}
	callEvent(t, a, client.CallRinging)
	if err := in.Call.Answer(tctx(t), answer); err != nil {
		t.Fatal(err)
	}
	if ev := callEvent(t, a, client.CallAnswered); ev.SDP != answer {
		t.Fatalf("answer %q", ev.SDP)
	}
	callEvent(t, a, client.CallEstablished)
	callEvent(t, b, client.CallEstablished)
	return out, in.Call
}

// reOffer has by (the call of byC) re-offer sdp and its peer (of peerC)
// answer it with answer, across the nodes.
func reOffer(t *testing.T, by *client.Call, byC *client.Client, peer *client.Call, peerC *client.Client, sdp, answer string) {
	t.Helper()
	if err := by.ReOffer(tctx(t), sdp); err != nil {
		t.Fatal(err)
	}
	if ev := callEvent(t, peerC, client.CallReOffer); ev.SDP != sdp {
		t.Fatalf("re-offer SDP %q", ev.SDP)
	}
	if err := peer.Answer(tctx(t), answer); err != nil {
		t.Fatal(err)
	}
	callEvent(t, byC, client.CallReOfferAnswered)
	callEvent(t, peerC, client.CallEstablished)
}

// TestCallAcrossNodes: a browser-to-browser call between sessions on
// two nodes: start, ringing, answer, re-offers from both sides, and
// shutdown from either side.
func TestCallAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0), nil)
	bob := dial(t, "bob@example.com", urls(nodes, 1), nil)
	out, in := call(t, alice, bob)
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	held := strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)
	// A re-offer from the callee, then one from the caller.
	reOffer(t, in, bob, out, alice, hold, held)
	reOffer(t, out, alice, in, bob, hold, held)
	// The callee hangs up.
	if err := in.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	callEvent(t, alice, client.CallEnded)
	// A second call, from bob's node to alice's, that the caller ends.
	out, _ = call(t, bob, alice)
	if err := out.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	callEvent(t, alice, client.CallEnded)
}

// receiver records the bodies of the messages a client gets, in order.
type receiver struct {
	mu      sync.Mutex
	bodies  []string
	resumed int
	lost    int
	changed chan struct{}
	calls   chan client.Event // the call events, for callEvent
}

func receive(c *client.Client) *receiver {
	r := &receiver{changed: make(chan struct{}, 1), calls: make(chan client.Event, 64)}
	go func() {
		for ev := range c.Events() {
			r.mu.Lock()
			switch ev.Kind {
			case client.EventMessage:
				r.bodies = append(r.bodies, ev.Message.Body)
			case client.EventResumed:
				r.resumed++
			case client.EventSessionLost:
				r.lost++
			case client.EventCall:
				select {
				case r.calls <- ev:
				default:
				}
			}
			r.mu.Unlock()
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

// until waits, event by event, for cond, for 30 s.
func (r *receiver) until(t *testing.T, what string, cond func(r *receiver) bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-timeout:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no %s: %d bodies, %d resumes, %d lost", what, len(r.bodies), r.resumed, r.lost)
		}
	}
}

// callEvent returns the next call event, which must be want.
func (r *receiver) callEvent(t *testing.T, want client.CallEvent) {
	t.Helper()
	select {
	case ev := <-r.calls:
		if ev.CallEvent != want {
			t.Fatalf("call event %v (%d %s), want %v", ev.CallEvent, ev.Code, ev.Reason, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no call event %v", want)
	}
}

// lockedBuffer is a buffer a client's logger writes to from its
// goroutines while the test may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// checkStream fails unless bodies are m0..m<n-1>, once each, in order.
func checkStream(t *testing.T, bodies []string, n int) {
	t.Helper()
	if len(bodies) != n {
		t.Errorf("%d messages received, want %d", len(bodies), n)
	}
	for i, b := range bodies {
		if b != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q: lost, duplicated or out of order", i, b)
		}
	}
}

// TestResumeOnAnotherNode: while a numbered stream of messages flows to
// bob, bob's socket is killed again and again and his client resumes on
// the next node each time: every resume is a takeover of the session by
// another node (the previous owner closes its socket with 4000 and lets
// go), and every message arrives once, in order.
func TestResumeOnAnotherNode(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0)[:1], nil)
	// Bob's client log, frames in included, is shown when the test fails:
	// a frame it dropped (a duplicate, one before the connect response) or
	// a gap in the gateway's sequence is said there only.
	var blog lockedBuffer
	bob := dial(t, "bob@example.com", urls(nodes, 1), func(o *client.Options) {
		o.AutoAcceptMessages = true
		o.Logger = slog.New(slog.NewTextHandler(&blog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	r := receive(bob)
	id := bob.SessionID()
	const n, every = 200, 20
	// A failure names what bob lacks and how alice's sends were
	// answered: a message lost once in CI (199 bodies) said neither.
	var answers []string
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		got := map[string]bool{}
		for _, b := range r.bodies {
			got[b] = true
		}
		var missing []string
		for i := range n {
			if b := fmt.Sprintf("m%d", i); !got[b] {
				missing = append(missing, b)
			}
		}
		t.Logf("bob lacks %v; sends not answered 200: %v", missing, answers)
		t.Logf("bob's client log:\n%s", blog.String())
	})
	for i := range n {
		if i > 0 && i%every == 0 {
			bob.Kill()
		}
		// A report may be owed by a socket killed meanwhile: the next
		// message goes on regardless; what counts is what bob gets.
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		code, err := alice.Send(c, "bob@example.com", "text/plain", fmt.Sprintf("m%d", i))
		cancel()
		if code != 200 || err != nil {
			answers = append(answers, fmt.Sprintf("m%d: %d %v", i, code, err))
		}
	}
	r.until(t, "every message", func(r *receiver) bool { return len(r.bodies) >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	checkStream(t, r.bodies, n)
	if r.lost != 0 || r.resumed < n/every-1 || bob.SessionID() != id {
		t.Errorf("%d resumes, %d sessions lost, id %s -> %s", r.resumed, r.lost, id, bob.SessionID())
	}
}

// TestNodeKilled: kill -9 of the node that owns bob's session and hosts
// his call with carol: bob's client resumes on another node from the
// replicated record (same session, no message lost), the call hosted on
// the dead node is adopted by another from its record once the lease
// expires and goes on (a re-offer, then carol's hang-up), and messaging
// goes on.
func TestNodeKilled(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0)[:1], nil)
	bob := dial(t, "bob@example.com", urls(nodes, 1), func(o *client.Options) { o.AutoAcceptMessages = true })
	carol := dial(t, "carol@example.com", urls(nodes, 2)[:1], nil)
	id := bob.SessionID()
	out, in := call(t, bob, carol) // hosted on n2, bob's node
	if code, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "m0"); err != nil || code != 200 {
		t.Fatalf("before the kill: %d, %v", code, err)
	}
	if ev := event(t, bob, client.EventMessage); ev.Message.Body != "m0" {
		t.Fatalf("bob got %q", ev.Message.Body)
	}
	nodes[1].stop(t, syscall.SIGKILL)
	event(t, bob, client.EventResumed)
	// Carol's re-offer may reach the call's new host only once her node
	// has read the call's record, which waits out the buckets' elections
	// after the kill (seconds, more on a loaded machine: it took over 15 s
	// once in CI); a refusal on her side fails the test with its code.
	if err := in.ReOffer(tctx(t), offer); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(45 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-bob.Events():
			if ev.Kind == client.EventCall {
				if ev.CallEvent != client.CallReOffer || ev.SDP != offer {
					t.Fatalf("bob: call event %v (%d %s), want the re-offer", ev.CallEvent, ev.Code, ev.Reason)
				}
				got = true
			}
		case ev := <-carol.Events():
			if ev.Kind == client.EventCall {
				t.Fatalf("carol: call event %v (%d %s) before bob had her re-offer", ev.CallEvent, ev.Code, ev.Reason)
			}
		case <-timeout:
			t.Fatal("bob: no re-offer from carol within 45 s of his resume")
		}
	}
	if err := out.Answer(tctx(t), answer); err != nil {
		t.Fatal(err)
	}
	callEvent(t, carol, client.CallReOfferAnswered)
	callEvent(t, bob, client.CallEstablished)
	ended(t, in, bob)
	if bob.SessionID() != id {
		t.Fatalf("bob's session %s became %s: not resumed", id, bob.SessionID())
	}
	if code, err := alice.Send(tctx(t), "bob@example.com", "text/plain", "m1"); err != nil || code != 200 {
		t.Fatalf("after the kill: %d, %v", code, err)
	}
	if ev := event(t, bob, client.EventMessage); ev.Message.Body != "m1" {
		t.Fatalf("bob got %q", ev.Message.Body)
	}
	// A new call between the survivors works.
	out, _ = call(t, alice, bob)
	if err := out.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	callEvent(t, bob, client.CallEnded)
}

// TestRollingRestart: each node in turn is drained (SIGTERM) and started
// again while a numbered stream of messages flows from alice to bob: the
// draining node closes its sockets with 1001, the clients resume on the
// next node, and every message arrives once, in order, with no session
// lost. A call hosted on the first node goes on through its drain (a
// re-offer and its answer cross the nodes) and ends by a hangup, which
// lets the drained node exit.
//
// Serial (harness_test.go): it times drains and lease expiries closely.
func TestRollingRestart(t *testing.T) {
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0), nil)
	bob := dial(t, "bob@example.com", urls(nodes, 1), func(o *client.Options) { o.AutoAcceptMessages = true })
	out, in := call(t, alice, bob) // hosted on n1
	r := receive(bob)
	var sent atomic.Int64
	var longest time.Duration // a report's longest wait; read after done
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				sent.Store(int64(i))
				return
			default:
			}
			// A report cut by a drain is not waited for: what counts is
			// what bob gets.
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t0 := time.Now()
			alice.Send(c, "bob@example.com", "text/plain", fmt.Sprintf("m%d", i))
			longest = max(longest, time.Since(t0))
			cancel()
		}
	}()
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	held := strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)
	for i, n := range nodes {
		n.signal(syscall.SIGTERM)
		if i == 0 {
			// Alice resumes on n2; the call stays hosted on n1, which
			// drains on while it lasts.
			event(t, alice, client.EventResumed)
			if err := in.ReOffer(tctx(t), hold); err != nil {
				t.Fatal(err)
			}
			if ev := callEvent(t, alice, client.CallReOffer); ev.SDP != hold {
				t.Fatalf("re-offer SDP %q", ev.SDP)
			}
			if err := out.Answer(tctx(t), held); err != nil {
				t.Fatal(err)
			}
			r.callEvent(t, client.CallReOfferAnswered)
			callEvent(t, alice, client.CallEstablished)
			if err := in.Hangup(tctx(t)); err != nil {
				t.Fatal(err)
			}
			callEvent(t, alice, client.CallEnded)
		}
		n.wait(t, syscall.SIGTERM)
		n.start(t)
	}
	close(stop)
	<-done
	n := int(sent.Load())
	r.until(t, "every message", func(r *receiver) bool { return len(r.bodies) >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	checkStream(t, r.bodies, n)
	if r.lost != 0 {
		t.Errorf("bob's session lost %d times", r.lost)
	}
	if n < 100 {
		t.Errorf("only %d messages sent: the stream stalled", n)
	}
	t.Logf("%d messages through a rolling restart of 3 nodes, %d resumes of bob; longest wait for a report %v", n, r.resumed, longest.Round(time.Millisecond))
}

// TestHangUpToAKilledCallee: kill -9 of bob's node while he is in a call
// with alice, hosted on her node, and alice hangs up at once: the host's
// relay of her hang-up finds nobody serving bob's session, whose node's
// lease has not expired yet. It waits on the host and reaches bob once
// his client has resumed on another node. Before, it was dropped: bob's
// client held the call alice had ended.
func TestHangUpToAKilledCallee(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	alice := dial(t, "alice@example.com", urls(nodes, 0)[:1], nil)
	bob := dial(t, "bob@example.com", urls(nodes, 1), nil)
	out, _ := call(t, alice, bob) // hosted on n1, alice's node
	nodes[1].stop(t, syscall.SIGKILL)
	if err := out.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	event(t, bob, client.EventResumed)
	if ev := callEvent(t, bob, client.CallEnded); ev.Reason != "shutdown" {
		t.Fatalf("bob's call ended with %q, want alice's shutdown", ev.Reason)
	}
}
