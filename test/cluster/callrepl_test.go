package cluster

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

var hostKillCalls = flag.Int("callrepl.calls", 100, "calls up when TestCallsSurviveTheirHost kills their host (issue 13: 100)")

// metric returns the value of the unlabelled metric name on the metrics
// listener addr, or "" when it is not there.
func metric(t *testing.T, addr, name string) string {
	t.Helper()
	v, err := readMetric(addr, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readMetric is metric for a goroutine of the test's, which may not
// fail it.
func readMetric(addr, name string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v, nil
		}
	}
	return "", sc.Err()
}

// timeToMetric reports, once the metric name summed over addrs is want,
// how long after from that was; nothing if it is not by deadline. It
// polls on a goroutine of its own: the test goes on meanwhile.
func timeToMetric(name string, want int, from, deadline time.Time, addrs ...string) <-chan time.Duration {
	c := make(chan time.Duration, 1)
	go func() {
		for time.Now().Before(deadline) {
			got := 0
			for _, a := range addrs {
				v, _ := readMetric(a, name)
				n, _ := strconv.Atoi(v)
				got += n
			}
			if got == want {
				c <- time.Since(from)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(c)
	}()
	return c
}

// untilMetric waits until the metric name, summed over the nodes'
// metrics listeners addrs, is want. Polled: a record written to the
// store has no event the test sees.
func untilMetric(t *testing.T, name string, want int, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := 0
		for _, a := range addrs {
			v, _ := strconv.Atoi(metric(t, a, name))
			got += v
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %d after 30s, want %d", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// resumedBy waits for c's resume until deadline.
func resumedBy(t *testing.T, c *client.Client, deadline time.Time) {
	t.Helper()
	timeout := time.After(time.Until(deadline))
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok || ev.Kind == client.EventClosed || ev.Kind == client.EventSessionLost {
				t.Fatalf("%s: session lost waiting for its resume", c.Identity())
			}
			if ev.Kind == client.EventResumed {
				return
			}
		case <-timeout:
			t.Fatalf("%s: not resumed in time", c.Identity())
		}
	}
}

// ended has by hang up and checks that its peer (of peerC) hears the
// hang-up (a shutdown, not the call's node going down).
func ended(t *testing.T, by *client.Call, peerC *client.Client) {
	t.Helper()
	if err := by.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if ev := callEvent(t, peerC, client.CallEnded); ev.Reason != "shutdown" {
		t.Fatalf("%s: call ended with %q, want the peer's shutdown", peerC.Identity(), ev.Reason)
	}
}

// TestCallsSurviveTheirHost: calls up between callers on n1 and callees
// on n2 live on n1, their host, which is killed (kill -9). n2 adopts them
// from their records as n1's lease expires, the callers resume on n2,
// and every call goes on: a re-offer passes on half of them (from the
// callee on some, from the caller on others), and each ends by a hang-up,
// half by the caller and half by the callee, that the other side hears.
// Before, every call ended on both sides ("the call's node went down").
// -callrepl.calls sets the number of calls (100, as issue 13 asks: about
// 40 s under the race detector on a shared 2-core machine):
//
//	go test -race -run TestCallsSurviveTheirHost -v ./test/cluster/ -args -callrepl.calls 20
//
// Serial (harness_test.go): its 200 sessions load the machine.
func TestCallsSurviveTheirHost(t *testing.T) {
	nodes := newCluster(t)
	type pair struct {
		a, b    *client.Client
		out, in *client.Call
	}
	pairs := make([]pair, *hostKillCalls)
	// Every callee first: a session's directory entry is written out of
	// line, and a call placed the instant its callee connected on
	// another node may find nobody (404).
	for i := range pairs {
		pairs[i].b = dial(t, fmt.Sprintf("callee%d@example.com", i), urls(nodes, 1), nil)
	}
	for i := range pairs {
		pairs[i].a = dial(t, fmt.Sprintf("caller%d@example.com", i), urls(nodes, 0), nil)
	}
	for i := range pairs {
		pairs[i].out, pairs[i].in = call(t, pairs[i].a, pairs[i].b)
	}
	untilMetric(t, "jsonrtc_call_records", len(pairs), nodes[0].metrics)
	start := time.Now()
	nodes[0].stop(t, syscall.SIGKILL)
	// The callers resume as n1's lease expires (lease_ttl and a third),
	// those past the resume's 8 s budget told to resume again (1013):
	// on a loaded machine the last comes well after 15 s.
	deadline := time.Now().Add(90 * time.Second)
	adopted := timeToMetric("jsonrtc_calls_adopted_total", len(pairs), start, deadline, nodes[1].metrics, nodes[2].metrics)
	for _, p := range pairs {
		resumedBy(t, p.a, deadline)
	}
	t.Logf("%d callers resumed %v after the kill", len(pairs), time.Since(start))
	// Mostly by n2, the callees' node; a caller that resumes on n3
	// before n2 got to its call has n3 adopt it.
	untilMetric(t, "jsonrtc_calls_adopted_total", len(pairs), nodes[1].metrics, nodes[2].metrics)
	if d, ok := <-adopted; ok {
		t.Logf("%d calls adopted %v after the kill", len(pairs), d)
	}
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	held := strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)
	for i, p := range pairs {
		switch i % 4 {
		case 0:
			reOffer(t, p.in, p.b, p.out, p.a, hold, held)
		case 1:
			reOffer(t, p.out, p.a, p.in, p.b, hold, held)
		}
	}
	for i, p := range pairs {
		if i%2 == 0 {
			ended(t, p.out, p.b)
		} else {
			ended(t, p.in, p.a)
		}
	}
	untilMetric(t, "jsonrtc_call_records", 0, nodes[1].metrics, nodes[2].metrics)
}

// TestRestartKeepsCall: one jsonrtcd alone (the nats store on its data
// directory) is killed (kill -9) during a call and started again on the
// same directory: both sessions resume, and the call goes on: a re-offer
// and its answer pass, and the hang-up reaches the other side. Before,
// the restarted node knew no call: the re-offer failed.
func TestRestartKeepsCall(t *testing.T) {
	t.Parallel()
	restartKeepsCall(t, syscall.SIGKILL)
}

// TestStopKeepsCall is TestRestartKeepsCall with a SIGTERM: the
// process stopped as an operator restarts it.
func TestStopKeepsCall(t *testing.T) {
	t.Parallel()
	restartKeepsCall(t, syscall.SIGTERM)
}

func restartKeepsCall(t *testing.T, sig syscall.Signal) {
	n := single(t, "nats")
	alice := dial(t, "alice@example.com", []string{n.ws()}, nil)
	bob := dial(t, "bob@example.com", []string{n.ws()}, nil)
	out, in := call(t, alice, bob)
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	held := strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)
	reOffer(t, out, alice, in, bob, hold, held)
	// The record is written after each change, out of line.
	untilMetric(t, "jsonrtc_call_records", 1, n.metrics)
	n.stop(t, sig)
	n.start(t)
	event(t, alice, client.EventResumed)
	event(t, bob, client.EventResumed)
	reOffer(t, in, bob, out, alice, offer, answer)
	ended(t, out, bob)
}

// TestRingingCallSurvivesItsHost: alice on n1 calls bob, who has a
// session on n2 and one on n3; both ring, and n1, the call's host, is
// killed (kill -9) before either answers. A survivor adopts the ringing
// call from its record (written at the start) as n1's lease expires,
// alice resumes, and bob's answer on n2 reaches her while his phone on
// n3 stops ringing; alice's hang-up reaches bob. Before, the ringing
// call ended on every side with its host ("the call's node went
// down").
func TestRingingCallSurvivesItsHost(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t)
	bob := dial(t, "bob@example.com", urls(nodes, 1), nil)
	bob2 := dial(t, "bob@example.com", urls(nodes, 2), nil)
	alice := dial(t, "alice@example.com", urls(nodes, 0), nil)
	out, err := alice.StartCall(tctx(t), bob.Identity(), offer)
	if err != nil {
		t.Fatal(err)
	}
	in := incoming(t, alice, bob)
	incoming(t, alice, bob2)
	if err := in.Call.Ring(tctx(t)); err != nil {
		t.Fatal(err)
	}
	callEvent(t, alice, client.CallRinging)
	untilMetric(t, "jsonrtc_call_records", 1, nodes[0].metrics)
	nodes[0].stop(t, syscall.SIGKILL)
	resumedBy(t, alice, time.Now().Add(90*time.Second))
	untilMetric(t, "jsonrtc_calls_adopted_total", 1, nodes[1].metrics, nodes[2].metrics)
	if err := in.Call.Answer(tctx(t), answer); err != nil {
		t.Fatal(err)
	}
	if ev := callEvent(t, alice, client.CallAnswered); ev.SDP != answer {
		t.Fatalf("answer %q", ev.SDP)
	}
	callEvent(t, alice, client.CallEstablished)
	callEvent(t, bob, client.CallEstablished)
	callEvent(t, bob2, client.CallEnded)
	ended(t, out, bob)
	untilMetric(t, "jsonrtc_call_records", 0, nodes[1].metrics, nodes[2].metrics)
}

// TestClusterRestartAll: every node killed at once (kill -9 of all
// three: a power cut, the host rebooted) and started again on its data
// directory. Every client resumes its own session, the call between
// alice (n1) and bob (n2) goes on (a re-offer, then the hang-up heard on
// the other side: n1 adopted back the call of its earlier life), a
// message carol (n3) sent while no node was up is delivered once, and
// reported so, after her resume, and her presence is as she published
// it before, bob's watch of it going on.
func TestClusterRestartAll(t *testing.T) {
	t.Parallel()
	restartAll(t, syscall.SIGKILL)
}

// TestClusterStopAll is TestClusterRestartAll with every node stopped
// at once by SIGTERM (the hosts shut down together): each drains with
// no node to hand its sessions to.
func TestClusterStopAll(t *testing.T) {
	t.Parallel()
	restartAll(t, syscall.SIGTERM)
}

// restartAll stops every node at once with sig, and starts them again
// (TestClusterRestartAll).
func restartAll(t *testing.T, sig syscall.Signal) {
	nodes := newCluster(t)
	accept := func(o *client.Options) { o.AutoAcceptMessages = true }
	alice := dial(t, "alice@example.com", urls(nodes, 0), accept)
	bob := dial(t, "bob@example.com", urls(nodes, 1), nil)
	carol := dial(t, "carol@example.com", urls(nodes, 2), nil)
	clients := []*client.Client{alice, bob, carol}
	var ids []string
	for _, c := range clients {
		ids = append(ids, c.SessionID())
	}
	out, in := call(t, alice, bob)
	untilMetric(t, "jsonrtc_call_records", 1, nodes[0].metrics)
	if _, err := bob.Watch(tctx(t), "w1", carol.Identity()); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, protocol.PresencePayload{Status: "open"})
	busy := protocol.PresencePayload{Status: "open", Activity: "busy"}
	if err := carol.Publish(tctx(t), busy); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, busy)
	for _, n := range nodes {
		n.signal(sig)
	}
	for _, n := range nodes {
		n.wait(t, sig)
	}
	sent := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		code, err := carol.Send(ctx, alice.Identity(), "text/plain", "while the cluster was down")
		if err == nil && code != 200 {
			err = fmt.Errorf("reported %d", code)
		}
		sent <- err
	}()
	start := time.Now()
	startNodes(t, nodes)
	for _, n := range nodes {
		n.waitPeers(t, len(nodes))
	}
	up := time.Since(start)
	for i, c := range clients {
		resumedBy(t, c, time.Now().Add(90*time.Second))
		if c.SessionID() != ids[i] {
			t.Fatalf("%s's session %s became %s", c.Identity(), ids[i], c.SessionID())
		}
	}
	resumed := time.Since(start)
	if ev := event(t, alice, client.EventMessage); ev.Message.Body != "while the cluster was down" {
		t.Fatalf("alice got %q", ev.Message.Body)
	}
	if err := <-sent; err != nil {
		t.Fatalf("carol's message sent while the cluster was down: %v", err)
	}
	// Carol's publication is still hers, and bob's watch still watches.
	if _, err := alice.Watch(tctx(t), "w1", carol.Identity()); err != nil {
		t.Fatal(err)
	}
	notified(t, alice, busy)
	away := protocol.PresencePayload{Status: "open", Activity: "away"}
	if err := carol.Publish(tctx(t), away); err != nil {
		t.Fatal(err)
	}
	notified(t, bob, away)
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	held := strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)
	reOffer(t, in, bob, out, alice, hold, held)
	ended(t, out, bob)
	untilMetric(t, "jsonrtc_call_records", 0, nodes[0].metrics, nodes[1].metrics, nodes[2].metrics)
	t.Logf("cluster up %v after the restart, every client resumed %v after it", up.Round(time.Millisecond), resumed.Round(time.Millisecond))
}
