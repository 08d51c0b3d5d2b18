package cluster

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// netLab is a network made for one test: a namespace per node, each
// with a veth into a bridge in a hub namespace, and a veth from the
// hub into the test's own namespace, so that the test reaches every
// node. Its addresses are a /24 of 198.18.0.0/15 (RFC 2544, reserved
// for tests), on the lab's veths only: the host's interfaces are not
// touched. A partition drops packets inside one node's namespace
// (nftables), the test still reaching the node.
type netLab struct {
	t      testing.TB
	id     string // in every name the lab makes: unique per run
	prefix string // "198.18.X."
	ns     []string
}

// host is the test's address on the lab's network.
func (l *netLab) host() string { return l.prefix + "100" }

// addr is node i's address.
func (l *netLab) addr(i int) string { return l.prefix + strconv.Itoa(i+1) }

// run runs a command of the lab's making; a failure fails the test.
func (l *netLab) run(stdin string, args ...string) {
	l.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetLab makes the namespaces of n nodes, and removes them at the
// test's end, failed or not. Where namespaces cannot be made (not root,
// no iproute2 or nftables) the test is skipped, and fails under CI.
func newNetLab(t testing.TB, n int) *netLab {
	t.Helper()
	_, ipErr := exec.LookPath("ip")
	_, nftErr := exec.LookPath("nft")
	testenv.Require(t, "network namespaces (root, ip, nft)", "run as root; apt-get install iproute2 nftables",
		os.Geteuid() == 0 && ipErr == nil && nftErr == nil)
	l := &netLab{t: t, id: fmt.Sprintf("%04x", rand.IntN(1<<16))}
	// A /24 no interface here has yet (another run's lab, say).
	for range 20 {
		l.prefix = fmt.Sprintf("198.%d.%d.", 18+rand.IntN(2), rand.IntN(256))
		out, err := exec.Command("ip", "-4", "-o", "route", "show", "to", "match", l.host()).Output()
		if err == nil && !strings.Contains(string(out), l.prefix) {
			break
		}
	}
	hub := "jrtc-" + l.id + "-hub"
	if out, err := exec.Command("ip", "netns", "add", hub).CombinedOutput(); err != nil {
		testenv.Require(t, "network namespaces", "ip netns add: "+strings.TrimSpace(string(out)), false)
	}
	veth := "jp" + l.id // + h/g (the test's), a<i>/b<i> (node i's)
	t.Cleanup(func() {
		for _, ns := range append(l.ns, hub) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
		exec.Command("ip", "link", "del", veth+"h").Run() // gone with the hub already, normally
	})
	l.run("", "ip", "-n", hub, "link", "add", "br0", "type", "bridge")
	l.run("", "ip", "-n", hub, "link", "set", "br0", "up")
	plug := func(end, peer, into string) {
		l.run("", "ip", "link", "add", end, "type", "veth", "peer", "name", peer)
		l.run("", "ip", "link", "set", peer, "netns", hub)
		l.run("", "ip", "-n", hub, "link", "set", peer, "master", "br0", "up")
		if into != "" {
			l.run("", "ip", "link", "set", end, "netns", into)
		}
	}
	for i := range n {
		ns := fmt.Sprintf("jrtc-%s-n%d", l.id, i+1)
		l.run("", "ip", "netns", "add", ns)
		l.ns = append(l.ns, ns)
		end := fmt.Sprintf("%sa%d", veth, i+1)
		plug(end, fmt.Sprintf("%sb%d", veth, i+1), ns)
		l.run("", "ip", "-n", ns, "addr", "add", l.addr(i)+"/24", "dev", end)
		l.run("", "ip", "-n", ns, "link", "set", end, "up")
		// The embedded NATS server's client listener is on loopback.
		l.run("", "ip", "-n", ns, "link", "set", "lo", "up")
	}
	plug(veth+"h", veth+"g", "")
	l.run("", "ip", "addr", "add", l.host()+"/24", "dev", veth+"h")
	l.run("", "ip", "link", "set", veth+"h", "up")
	return l
}

// cut drops, in node i's namespace, every packet between it and the
// nodes only (all the others when none is named); the test still
// reaches it.
func (l *netLab) cut(i int, only ...int) {
	l.t.Helper()
	var peers []string
	for j := range l.ns {
		if j != i && (len(only) == 0 || slices.Contains(only, j)) {
			peers = append(peers, l.addr(j))
		}
	}
	set := strings.Join(peers, ", ")
	l.run(fmt.Sprintf(`table inet jrtcpart {
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr { %s } drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr { %s } drop
	}
}
`, set, set), "ip", "netns", "exec", l.ns[i], "nft", "-f", "-")
}

// heal undoes cut(i).
func (l *netLab) heal(i int) {
	l.t.Helper()
	l.run("", "ip", "netns", "exec", l.ns[i], "nft", "delete", "table", "inet", "jrtcpart")
}

// callEvents lists the call events r holds, without waiting.
func callEvents(r *receiver) string {
	var out []string
	for {
		select {
		case ev := <-r.calls:
			out = append(out, fmt.Sprintf("%v %d %q", ev.CallEvent, ev.Code, ev.Reason))
		default:
			return strings.Join(out, ", ")
		}
	}
}

// labNodes makes three nodes, not started, each in its namespace of a
// netLab.
func labNodes(t *testing.T) (*netLab, []*node) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs three jsonrtcd processes")
	}
	lab := newNetLab(t, 3)
	port := 7000
	nodes := newNodes(t, 3, lab.addr, func() int { port++; return port })
	for i, n := range nodes {
		n.netns = lab.ns[i]
	}
	return lab, nodes
}

// from is a receiver's condition: n messages from who received.
func from(who string, n int) func(*receiver) bool {
	return func(r *receiver) bool {
		c := 0
		for _, b := range r.bodies {
			if strings.HasPrefix(b, who+":") {
				c++
			}
		}
		return c >= n
	}
}

// numbered sends body "<from>:<k>", k = 0, 1, ..., from c to target
// until stop is closed, and records the numbers reported delivered.
type numbered struct {
	from      string
	mu        sync.Mutex
	delivered map[int]bool
	sent      atomic.Int64
}

func sendNumbered(c *client.Client, from, target string, stop <-chan struct{}, wg *sync.WaitGroup) *numbered {
	s := &numbered{from: from, delivered: map[int]bool{}}
	wg.Go(func() {
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			// A report that does not come (the sender's node cut off)
			// is not waited for: the client resends the frame where it
			// resumes, and what counts is what the receiver gets.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			code, err := c.Send(ctx, target, "text/plain", from+":"+strconv.Itoa(k))
			cancel()
			s.sent.Store(int64(k + 1))
			if err == nil && code == 200 {
				s.mu.Lock()
				s.delivered[k] = true
				s.mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond) // a stream, not a flood
		}
	})
	return s
}

// check fails unless r got every number of s reported delivered, none
// twice, in order; it returns how many it got.
func (s *numbered) check(t *testing.T, r *receiver) int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	got, high := map[int]bool{}, -1
	for _, b := range r.bodies {
		from, num, ok := strings.Cut(b, ":")
		if !ok || from != s.from {
			continue
		}
		k, _ := strconv.Atoi(num)
		if got[k] {
			t.Errorf("%s:%d delivered twice", s.from, k)
		} else if k < high {
			t.Errorf("%s:%d after %s:%d: out of order", s.from, k, s.from, high)
		}
		got[k], high = true, max(high, k)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.delivered {
		if !got[k] {
			t.Errorf("%s:%d reported delivered, not received", s.from, k)
		}
	}
	return len(got)
}

// TestClusterPartition: three nodes in network namespaces; sessions on
// each exchange numbered messages and two of them hold a call. n3 is cut
// off from the other two for longer than lease_ttl: its writes fail, it
// lets go of its session (its client closed, resuming on the majority,
// which serves it), the majority goes on (messages, the call's
// re-offer). Healed, n3 rejoins with no session owned twice (every
// node's /cluster/status agrees), and messages flow across all three. No
// message is delivered twice or out of order, none reported delivered
// is lost, no client is closed for good.
//
// Serial (harness_test.go): network namespaces and fixed ports.
func TestClusterPartition(t *testing.T) {
	lab, nodes := labNodes(t)
	start := time.Now()
	startCluster(t, nodes, "")
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	accept := func(o *client.Options) { o.AutoAcceptMessages = true }
	alice := dial(t, "alice@example.com", urls(nodes, 0), accept)
	bob := dial(t, "bob@example.com", urls(nodes, 1), accept)
	carol := dial(t, "carol@example.com", urls(nodes, 2), accept) // n3, then n1
	cid := carol.SessionID()
	out, in := call(t, alice, bob) // hosted on n1
	ra, rb, rc := receive(alice), receive(bob), receive(carol)

	stop := make(chan struct{})
	var senders sync.WaitGroup
	aToC := sendNumbered(alice, "a", "carol@example.com", stop, &senders)
	bToC := sendNumbered(bob, "b", "carol@example.com", stop, &senders)
	cToA := sendNumbered(carol, "c", "alice@example.com", stop, &senders)
	stopSenders := sync.OnceFunc(func() { close(stop); senders.Wait() })
	t.Cleanup(stopSenders)
	rc.until(t, "messages to carol before the cut", from("a", 5))
	ra.until(t, "messages from carol before the cut", from("c", 5))

	// The cut: n3 alone, for three lease TTLs.
	const leaseTTL = defaultLease
	cut := time.Now()
	lab.cut(2)
	rc.until(t, "carol's resume on the majority", func(r *receiver) bool { return r.resumed > 0 })
	moved := time.Since(cut)
	if carol.SessionID() != cid {
		t.Fatalf("carol's session %s became %s: not resumed", cid, carol.SessionID())
	}
	// The majority serves carol (n1, next in her list, or n2 after it
	// when a dial to n1 failed), n3 gone from its view (down, owning
	// nothing), and the minority takes no new socket.
	at := untilStatusOneOf(t, nodes[0], 30*time.Second, map[string]string{"n1": "up/2", "n2": "up/1"}, map[string]string{"n1": "up/1", "n2": "up/2"})
	if code, body := readyz(t, nodes[2]); code != http.StatusServiceUnavailable || !strings.Contains(body, "cut off") {
		t.Errorf("n3 cut off: /readyz %d %q", code, body)
	}
	// The majority goes on: messages to and from carol, and a re-offer
	// in the call hosted on n1.
	nA, nC := aToC.sent.Load(), cToA.sent.Load()
	rc.until(t, "messages to carol in the cut", from("a", int(nA)+3))
	ra.until(t, "messages from carol in the cut", from("c", int(nC)+3))
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	held := strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)
	if err := in.ReOffer(tctx(t), hold); err != nil {
		t.Fatal(err)
	}
	ra.callEvent(t, client.CallReOffer)
	if err := out.Answer(tctx(t), held); err != nil {
		t.Fatal(err)
	}
	rb.callEvent(t, client.CallReOfferAnswered)
	ra.callEvent(t, client.CallEstablished)
	if d := 3*leaseTTL - time.Since(cut); d > 0 {
		time.Sleep(d) // the cut lasts: no event ends a partition
	}

	// Healed: n3 rejoins, every node sees the same owners, and a new
	// session on n3 talks with the others.
	healed := time.Now()
	lab.heal(2)
	want := map[string]string{"n1": at["n1"], "n2": at["n2"], "n3": "up/0"}
	for _, n := range nodes {
		// The routes' TCP connections come back from their
		// retransmission back-off: up to 24 s in 6 runs.
		untilStatusOneOf(t, n, time.Minute, want)
	}
	rejoined := time.Since(healed)
	// n3 takes sockets again once it sees its lease written.
	untilReady(t, nodes[2])
	dave := dial(t, "dave@example.com", urls(nodes, 2)[:1], accept)
	rd := receive(dave)
	dToA := sendNumbered(dave, "d", "alice@example.com", stop, &senders)
	bToD := sendNumbered(bob, "e", "dave@example.com", stop, &senders)
	ra.until(t, "messages from dave on n3", from("d", 5))
	rd.until(t, "messages to dave on n3", from("e", 5))
	nA, nC = aToC.sent.Load(), cToA.sent.Load()
	rc.until(t, "messages to carol after the heal", from("a", int(nA)+3))
	ra.until(t, "messages from carol after the heal", from("c", int(nC)+3))
	stopSenders()
	if err := in.Hangup(tctx(t)); err != nil {
		// Seen once in 12 runs after the fixes, not yet explained: the
		// call events bob got say how it ended.
		t.Fatalf("bob's hangup: %v; bob's call events since the re-offer: %s", err, callEvents(rb))
	}
	ra.callEvent(t, client.CallEnded)

	// What was reported delivered arrives, once each, in order.
	for _, p := range []struct {
		s *numbered
		r *receiver
	}{{aToC, rc}, {bToC, rc}, {cToA, ra}, {dToA, ra}, {bToD, rd}} {
		p.s.mu.Lock()
		n := len(p.s.delivered)
		p.s.mu.Unlock()
		p.r.until(t, "every message reported delivered", from(p.s.from, n))
		got := p.s.check(t, p.r)
		t.Logf("%s: %d sent, %d reported delivered, %d received", p.s.from, p.s.sent.Load(), n, got)
	}
	for _, c := range []*client.Client{alice, bob, carol, dave} {
		select {
		case <-c.Done():
			t.Errorf("%s closed by the gateway: %v", c.Identity(), c.Err())
		default:
		}
	}
	for _, r := range []*receiver{ra, rb, rc, rd} {
		r.mu.Lock()
		if r.lost != 0 {
			t.Errorf("a session lost %d times", r.lost)
		}
		r.mu.Unlock()
	}
	t.Logf("cut off for %v: carol resumed on the majority %v after the cut; healed, every node agreed in %v",
		healed.Sub(cut).Round(time.Millisecond), moved.Round(time.Millisecond), rejoined.Round(time.Millisecond))
}

// untilEveryViewAgrees polls, after a heal, until every node answers
// with its view and every peer's, and the views agree (the routes' TCP
// connections come back from their retransmission back-off), for a
// minute.
func untilEveryViewAgrees(t *testing.T, nodes []*node) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, n := range nodes {
		for {
			cv := everyView(t, n)
			answered := cv.Error == ""
			for _, v := range cv.Peers {
				answered = answered && v.Error == ""
			}
			if answered && len(cv.Disagree) == 0 && len(cv.Peers) == len(nodes)-1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the heal: held %v, disagreeing %q", n.name, held(cv), cv.Disagree)
			}
			time.Sleep(100 * time.Millisecond) // polled: views have no event to wait on
		}
	}
}

var oneLinkCut = flag.Duration("partition.onelink", 5*defaultLease, "how long TestClusterPartitionOneLink cuts the link (at least 5 lease TTLs)")

// TestClusterPartitionOneLink: three nodes in network namespaces, and
// only the link between n1 and n2 cut, for five lease TTLs: each still
// reaches n3, which reaches both (an asymmetric failure: a firewall
// rule, a route lost on one path). NATS does not carry messages between
// routes, so n1 and n2 do not hear each other, though each sees the
// other's lease written through the store. Sessions on each node
// exchange numbered messages throughout. Whatever the store and the
// nodes make of it meanwhile (its replicas' leaders may move, leases
// lapse, sockets close for a resume elsewhere), the messages between
// alice on n1 and bob on n2 flow in the cut's second half (requests
// between the two nodes go through n3, or a node cut from the store
// lets its session go to another), nothing reported delivered is lost,
// nothing is delivered twice or out of order, no session is lost and no
// client closed for good; healed, every node's view agrees
// (/cluster/status?all) and messages flow every way.
//
// Serial (harness_test.go): network namespaces and fixed ports.
func TestClusterPartitionOneLink(t *testing.T) {
	lab, nodes := labNodes(t)
	startCluster(t, nodes, "")
	tr := newTrio(t, nodes, flow{"a", 0, 1}, flow{"b", 1, 0}, flow{"c", 2, 0}, flow{"d", 0, 2}, flow{"e", 1, 2})
	tr.untilEach(t, "messages before the cut", func(*numbered) int { return 5 })
	before := tr.delivered()

	cut := time.Now()
	lab.cut(0, 1)
	// The cut lasts: no event ends a partition. Its first half takes
	// the routes' pings to find the link dead (natsstore's routePing),
	// the leases to lapse, the store's leaders to settle.
	time.Sleep(*oneLinkCut / 2)
	half := tr.delivered()
	time.Sleep(*oneLinkCut - *oneLinkCut/2)
	during := tr.delivered()
	lab.heal(0)
	healed := time.Now()
	for _, who := range []string{"a", "b"} {
		if during[who] <= half[who] {
			t.Errorf("%s: %d reported delivered at the cut's half, %d at its end: none through the cut's second half", who, half[who], during[who])
		}
	}
	untilEveryViewAgrees(t, nodes)
	agreed := time.Since(healed)
	tr.untilEach(t, "messages after the heal", tr.sentAnd(3))
	tr.check(t, func(s *numbered) string {
		return fmt.Sprintf("%d before the cut, %d by its half, %d by its end", before[s.from], half[s.from], during[s.from])
	})
	via := metricSeries(nodes, "jsonrtc_cluster_requests_via_total")
	t.Logf("requests through a third node: %v", via)
	t.Logf("n1-n2 cut for %v; healed, every node's view agreed in %v", healed.Sub(cut).Round(time.Millisecond), agreed.Round(time.Millisecond))
}

var everyLinkCut = flag.Duration("partition.everylink", 3*defaultLease, "how long TestClusterPartitionEveryLink cuts every link (within the sessions' resume timeout, 30 s)")

// TestClusterPartitionEveryLink: every link between the three nodes cut
// at once (the switch between them restarting): no node has a quorum.
// Each cuts itself off (/readyz 503, its sessions let go, no socket
// taken) and the clients keep trying. Healed after the cut's length
// (three lease TTLs by default, -partition.everylink), the cluster
// forms again, every node's view agrees, the clients resume their own
// sessions, the call between alice (n1) and bob (n2) goes on (a
// re-offer, a hang-up heard at both ends), messages flow every way,
// nothing reported delivered is lost, nothing is delivered twice or out
// of order, and no client is closed for good.
//
// Serial (harness_test.go): network namespaces and fixed ports.
func TestClusterPartitionEveryLink(t *testing.T) {
	lab, nodes := labNodes(t)
	startCluster(t, nodes, "")
	tr := dialTrio(t, nodes)
	var ids []string
	for _, c := range tr.clients {
		ids = append(ids, c.SessionID())
	}
	out, in := call(t, tr.clients[0], tr.clients[1]) // hosted on n1
	tr.start(t, flow{"a", 0, 1}, flow{"b", 1, 2}, flow{"c", 2, 0})
	ra, rb := tr.receivers[0], tr.receivers[1]
	tr.untilEach(t, "messages before the cut", func(*numbered) int { return 5 })

	cut := time.Now()
	for i := range nodes {
		lab.cut(i)
	}
	for _, n := range nodes {
		untilCutOff(t, n)
	}
	cutOff := time.Since(cut)
	if d := *everyLinkCut - time.Since(cut); d > 0 {
		time.Sleep(d) // the cut lasts: no event ends a partition
	}
	for i := range nodes {
		lab.heal(i)
	}
	healed := time.Now()
	untilEveryViewAgrees(t, nodes)
	agreed := time.Since(healed)
	for _, n := range nodes {
		untilReady(t, n)
	}
	tr.untilEach(t, "messages after the heal", tr.sentAnd(3))
	resumed := time.Since(healed)
	for i, c := range tr.clients {
		if c.SessionID() != ids[i] {
			t.Errorf("%s's session %s became %s: not resumed", c.Identity(), ids[i], c.SessionID())
		}
	}
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	heldAnswer := strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)
	if err := in.ReOffer(tctx(t), hold); err != nil {
		t.Fatalf("bob's re-offer after the heal: %v; bob's call events: %s", err, callEvents(rb))
	}
	ra.callEvent(t, client.CallReOffer)
	if err := out.Answer(tctx(t), heldAnswer); err != nil {
		t.Fatal(err)
	}
	rb.callEvent(t, client.CallReOfferAnswered)
	ra.callEvent(t, client.CallEstablished)
	if err := in.Hangup(tctx(t)); err != nil {
		t.Fatalf("bob's hangup: %v; bob's call events: %s", err, callEvents(rb))
	}
	ra.callEvent(t, client.CallEnded)
	tr.check(t, nil)
	t.Logf("every node cut off %v after the cut; cut for %v; healed, every node's view agreed in %v, messages flowed again in %v",
		cutOff.Round(time.Millisecond), healed.Sub(cut).Round(time.Millisecond), agreed.Round(time.Millisecond), resumed.Round(time.Millisecond))
}

// untilCutOff polls n's /readyz until it says n is cut off from the
// store (untilReadyz).
func untilCutOff(t *testing.T, n *node) {
	t.Helper()
	untilReadyz(t, n, func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "cut off")
	})
}

// trio is alice, bob and carol (in that order), each dialing her own
// node first (n1, n2, n3), and streams of numbered messages among them.
type trio struct {
	clients   []*client.Client
	receivers []*receiver
	streams   []stream
	// stop stops the senders and waits for them.
	stop func()
}

// stream is numbered messages and their receiver.
type stream struct {
	s *numbered
	r *receiver
}

// flow names a stream: its body prefix, and the trio's sender and
// receiver by index.
type flow struct {
	name     string
	from, to int
}

// newTrio is dialTrio, then flows started.
func newTrio(t *testing.T, nodes []*node, flows ...flow) *trio {
	t.Helper()
	tr := dialTrio(t, nodes)
	tr.start(t, flows...)
	return tr
}

// dialTrio dials the trio's clients.
func dialTrio(t *testing.T, nodes []*node) *trio {
	t.Helper()
	accept := func(o *client.Options) { o.AutoAcceptMessages = true }
	tr := &trio{}
	for i, who := range []string{"alice", "bob", "carol"} {
		tr.clients = append(tr.clients, dial(t, who+"@example.com", urls(nodes, i), accept))
	}
	return tr
}

// start takes the clients' events (receive: a call set up between them
// comes before) and starts the flows.
func (tr *trio) start(t *testing.T, flows ...flow) {
	for _, c := range tr.clients {
		tr.receivers = append(tr.receivers, receive(c))
	}
	stop := make(chan struct{})
	var senders sync.WaitGroup
	for _, f := range flows {
		tr.streams = append(tr.streams, stream{sendNumbered(tr.clients[f.from], f.name, tr.clients[f.to].Identity(), stop, &senders), tr.receivers[f.to]})
	}
	tr.stop = sync.OnceFunc(func() { close(stop); senders.Wait() })
	t.Cleanup(tr.stop)
}

// untilEach waits until each stream's receiver got at least n(its
// sender) of its messages.
func (tr *trio) untilEach(t *testing.T, what string, n func(*numbered) int) {
	t.Helper()
	for _, p := range tr.streams {
		p.r.until(t, p.s.from+"'s "+what, from(p.s.from, n(p.s)))
	}
}

// sentAnd is, for untilEach, the messages a sender has sent so far and
// k more.
func (tr *trio) sentAnd(k int) func(*numbered) int {
	sent := map[string]int{}
	for _, p := range tr.streams {
		sent[p.s.from] = int(p.s.sent.Load())
	}
	return func(s *numbered) int { return sent[s.from] + k }
}

// delivered counts, by stream, the messages reported delivered.
func (tr *trio) delivered() map[string]int {
	out := map[string]int{}
	for _, p := range tr.streams {
		p.s.mu.Lock()
		out[p.s.from] = len(p.s.delivered)
		p.s.mu.Unlock()
	}
	return out
}

// check stops the senders and fails unless every message reported
// delivered arrived, once, in order, no client was closed by the
// gateway and no session was lost; note (nil: none) adds to each
// stream's line of figures.
func (tr *trio) check(t *testing.T, note func(*numbered) string) {
	t.Helper()
	tr.stop()
	for _, p := range tr.streams {
		p.s.mu.Lock()
		n := len(p.s.delivered)
		p.s.mu.Unlock()
		p.r.until(t, "every message reported delivered", from(p.s.from, n))
		got := p.s.check(t, p.r)
		extra := ""
		if note != nil {
			extra = " (" + note(p.s) + ")"
		}
		t.Logf("%s: %d sent, %d reported delivered%s, %d received", p.s.from, p.s.sent.Load(), n, extra, got)
	}
	for _, c := range tr.clients {
		select {
		case <-c.Done():
			t.Errorf("%s closed by the gateway: %v", c.Identity(), c.Err())
		default:
		}
	}
	for i, r := range tr.receivers {
		r.mu.Lock()
		if r.lost != 0 {
			t.Errorf("%s's session lost %d times", tr.clients[i].Identity(), r.lost)
		}
		t.Logf("%s: %d resumes", tr.clients[i].Identity(), r.resumed)
		r.mu.Unlock()
	}
}
