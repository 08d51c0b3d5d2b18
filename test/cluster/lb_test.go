package cluster

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/kamailio"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// balanced is deployment (b) of docs/cluster.md, "SIP deployments": a
// registrar/proxy (the SIP network, a Kamailio on 127.0.0.1) that knows
// only the balancer (a second Kamailio, with dispatcher, path and rr, on
// 127.0.0.2), and three jsonrtcd whose SIP goes through the balancer.
type balanced struct {
	nodes     []*node
	sip       []string // the nodes' SIP addresses
	registrar string   // host:port
	regLog    string
	lbLog     string
}

// newBalanced starts deployment (b): the registrar, the balancer and
// the three nodes.
func newBalanced(t *testing.T) *balanced {
	t.Helper()
	testenv.Tool(t, "kamailio", "apt-get install kamailio")
	testenv.Tool(t, "sipp", "apt-get install sip-tester")
	if testing.Short() {
		t.Skip("runs three jsonrtcd processes")
	}
	b := &balanced{}
	rport, lbport := testenv.Port(t), testenv.Port(t)
	b.registrar = "127.0.0.1:" + strconv.Itoa(rport)
	lb := "127.0.0.2:" + strconv.Itoa(lbport)
	for range 3 {
		b.sip = append(b.sip, "127.0.0.1:"+strconv.Itoa(testenv.Port(t)))
	}

	cfg, err := kamailio.Config(kamailio.Options{Domain: "example.com", Port: rport, ModPath: kamailio.ModulesDir(),
		Users: map[string]string{regUser: ""}, Workers: 1, LogRequests: true, Path: true, Balancer: lb})
	if err != nil {
		t.Fatal(err)
	}
	b.regLog = runKamailio(t, t.TempDir(), cfg, b.registrar)

	dir := t.TempDir()
	list := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(list, kamailio.BalancerList(b.sip), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = kamailio.BalancerConfig(kamailio.BalancerOptions{Listen: lb, ModPath: kamailio.ModulesDir(), ListFile: list,
		Upstream: b.registrar, Probe: 1, FailoverMS: 2000, Workers: 2, LogRequests: true, MatchPort: true})
	if err != nil {
		t.Fatal(err)
	}
	b.lbLog = runKamailio(t, dir, cfg, lb)

	b.nodes = newNodes(t, 3, func(int) string { return "127.0.0.1" }, func() int { return testenv.Port(t) })
	var routes []string
	for _, n := range b.nodes {
		routes = append(routes, n.route)
	}
	for i, n := range b.nodes {
		n.writeConfig(t, fmt.Sprintf(`  listen: %s
  routes: [%s]
sip:
  domain: example.com
  registrar: sip:%s
  outbound_proxy: sip:%s
  balancers: [127.0.0.2]
  instance_id: urn:jsonrtc:%s
  listen: {udp: "%s"}
`, n.route, strings.Join(routes, ", "), b.registrar, lb, n.name, b.sip[i]))
	}
	runNodes(t, b.nodes)
	return b
}

// logLines returns the submatches of re in the lines of the log at
// path.
func logLines(t *testing.T, path string, re *regexp.Regexp) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return re.FindAllStringSubmatch(string(data), -1)
}

var (
	seenPath = regexp.MustCompile(`SEEN PATH ` + regUser + ` (<sip\S+)`)
	lbLine   = regexp.MustCompile(`LB (\S+) (\S+) (\S+)`)
)

// lastPath is the Path of the last REGISTER of regUser the registrar
// saw.
func (b *balanced) lastPath(t *testing.T) string {
	t.Helper()
	m := logLines(t, b.regLog, seenPath)
	if len(m) == 0 {
		t.Fatal("the registrar saw no REGISTER of " + regUser)
	}
	return m[len(m)-1][1]
}

// checkBinding checks that the registrar holds one binding of regUser,
// to the node at sip (its Contact), with the balancer's Path naming the
// node as received.
func (b *balanced) checkBinding(t *testing.T, sip string) {
	t.Helper()
	got := bindings(t, b.registrar)
	if len(got) != 1 || !strings.Contains(got[0], "@"+sip) {
		t.Fatalf("bindings %v, want one, of the node at %s", got, sip)
	}
	path := b.lastPath(t)
	if !strings.HasPrefix(path, "<sip:127.0.0.2:") || !strings.Contains(path, "received=sip:"+sip) {
		t.Fatalf("the binding's Path is %s: not the balancer's, received from %s", path, sip)
	}
}

// relayed counts the requests of method the balancer relayed to a
// Request-URI containing ruri and a destination containing du ("" for
// any).
func (b *balanced) relayed(t *testing.T, method, ruri, du string) int {
	t.Helper()
	return b.count(t, method, func(r, d string) bool { return strings.Contains(r, ruri) && strings.Contains(d, du) })
}

// relayedTo counts the requests of method the balancer relayed toward
// addr, by Request-URI or destination.
func (b *balanced) relayedTo(t *testing.T, method, addr string) int {
	t.Helper()
	return b.count(t, method, func(r, d string) bool { return strings.Contains(r, addr) || strings.Contains(d, addr) })
}

// count counts the balancer's log lines of method whose Request-URI and
// destination match.
func (b *balanced) count(t *testing.T, method string, match func(ruri, du string) bool) int {
	t.Helper()
	n := 0
	for _, m := range logLines(t, b.lbLog, lbLine) {
		if m[1] == method && match(m[2], m[3]) {
			n++
		}
	}
	return n
}

// webCallsSIPp has c call a SIPp UAS through the balancer and the
// registrar, and hang up: the BYE goes back the same way.
func webCallsSIPp(t *testing.T, c *client.Client) int {
	t.Helper()
	scenario, err := filepath.Abs("../interop/scenarios/uas_answer.xml")
	if err != nil {
		t.Fatal(err)
	}
	port, wait := startSIPp(t, "-sf", scenario)
	// An INVITE sent before SIPp binds is retransmitted (UDP).
	call, err := c.StartCall(tctx(t), "uas-"+strconv.Itoa(port)+"@example.com", offer)
	if err != nil {
		t.Fatal(err)
	}
	ev := event(t, c, client.EventCall)
	for ev.CallEvent == client.CallRinging || ev.CallEvent == client.CallAnswered {
		ev = event(t, c, client.EventCall)
	}
	if ev.CallEvent != client.CallEstablished {
		t.Fatalf("web call to SIPp: %v (%d %s), want established", ev.CallEvent, ev.Code, ev.Reason)
	}
	if err := call.Hangup(tctx(t)); err != nil {
		t.Fatal(err)
	}
	wait()
	return port
}

// TestBalancedCalls (issue 15, deployment (b)): open@example.com
// connects on n1, which registers through the balancer: the registrar
// holds one binding, n1's Contact, with the balancer's Path naming n1 as
// received (the registrar refuses a Path the node does not support:
// Supported: path). SIPp calls the user through the registrar, which
// routes by the Path to the balancer, which routes to n1; the user
// answers, and SIPp's BYE takes the route set back through the
// balancer. The user calls SIPp: the INVITE goes node -> balancer ->
// registrar -> SIPp, and the user's BYE back the same way. Then SIPp
// calls the service number (gw-open: the registrar hands it to the
// balancer, no binding involved) three times: the balancer picks a node
// round-robin, and each call rings the user on n1, from whichever node
// took it.
func TestBalancedCalls(t *testing.T) {
	t.Parallel()
	b := newBalanced(t)
	user := dial(t, regUser+"@example.com", urls(b.nodes, 0), nil)
	b.checkBinding(t, b.sip[0])

	sippCall(t, b.registrar, user)
	if n := b.relayed(t, "INVITE", "", b.sip[0]); n != 1 {
		t.Errorf("the balancer relayed %d INVITEs to n1, want 1", n)
	}
	if n := b.relayed(t, "BYE", "", ""); n != 1 {
		t.Errorf("the balancer relayed %d BYEs, want SIPp's", n)
	}

	port := webCallsSIPp(t, user)
	uas := "127.0.0.1:" + strconv.Itoa(port)
	if n := b.relayed(t, "INVITE", "uas-"+strconv.Itoa(port), b.registrar); n != 1 {
		t.Errorf("the balancer relayed %d of the user's INVITEs to the registrar, want 1", n)
	}
	if n := b.relayed(t, "BYE", uas, ""); n != 1 {
		t.Errorf("the balancer relayed %d of the user's BYEs to SIPp, want 1", n)
	}

	for range 3 {
		sippCallUser(t, b.registrar, "gw-"+regUser, user)
	}
	for i, sip := range b.sip {
		if n := b.relayed(t, "INVITE", "sip:"+regUser+"@example.com", sip); n != 1 {
			t.Errorf("the balancer sent n%d %d calls of the service number, want 1 (round-robin)", i+1, n)
		}
	}
}

// TestBalancedFailover: n1, the node of open@example.com, is killed
// (kill -9). The client resumes on another node, which registers the
// binding through the balancer under the same instance: the registrar
// holds one binding, the new node's, with the balancer's Path naming the
// new node. SIPp calls the user: the call rings through the new node.
// SIPp then calls the service number three times: the balancer's
// round-robin meets the dead n1 (until its probe took it out of the
// set: one probe a second), which it skips after a timeout, and every
// call rings the user.
func TestBalancedFailover(t *testing.T) {
	t.Parallel()
	b := newBalanced(t)
	user := dial(t, regUser+"@example.com", urls(b.nodes, 0), nil)
	b.checkBinding(t, b.sip[0])
	id := user.SessionID()

	b.nodes[0].stop(t, syscall.SIGKILL)
	event(t, user, client.EventResumed)
	if user.SessionID() != id {
		t.Fatalf("session %s became %s: not resumed", id, user.SessionID())
	}
	got := bindings(t, b.registrar)
	now := -1
	for i, sip := range b.sip[1:] {
		if len(got) == 1 && strings.Contains(got[0], "@"+sip) {
			now = i + 1
		}
	}
	if now < 0 {
		t.Fatalf("bindings after the resume: %v, want one, of n2 or n3", got)
	}
	b.checkBinding(t, b.sip[now])

	sippCall(t, b.registrar, user)
	if n := b.relayed(t, "INVITE", "", b.sip[now]); n != 1 {
		t.Errorf("the balancer relayed %d INVITEs to n%d, want 1", n, now+1)
	}
	for range 3 {
		sippCallUser(t, b.registrar, "gw-"+regUser, user)
	}
	if n := b.relayed(t, "INVITE", "sip:"+regUser+"@example.com", b.sip[1]) + b.relayed(t, "INVITE", "sip:"+regUser+"@example.com", b.sip[2]); n != 3 {
		t.Errorf("the balancer relayed %d INVITEs of the service number to n2 or n3, want 3", n)
	}
}

// TestBalancedSIPCallInSurvivesKill: the SIP call adoption of
// sipcall_test.go through the balancer. SIPp calls open@example.com
// (registrar -> balancer -> n1) and the user answers; n1 is killed
// (kill -9); the node that takes the session over adopts the dialog (its
// target refresh goes out through the balancer, which record-routed the
// call), and SIPp's re-INVITE, INFO and BYE reach the user through the
// balancer and the new node.
func TestBalancedSIPCallInSurvivesKill(t *testing.T) {
	t.Parallel()
	balancedSIPCallSurvives(t, false, syscall.SIGKILL)
}

// TestBalancedSIPCallOutSurvivesKill: the same with the user calling
// SIPp (node -> balancer -> registrar -> SIPp).
func TestBalancedSIPCallOutSurvivesKill(t *testing.T) {
	t.Parallel()
	balancedSIPCallSurvives(t, true, syscall.SIGKILL)
}

// TestBalancedSIPCallInMovesOnDrain: the same with n1 drained
// (SIGTERM): it hands the dialog over, and the adopter's refresh and
// SIPp's requests go through the balancer as after a kill.
func TestBalancedSIPCallInMovesOnDrain(t *testing.T) {
	t.Parallel()
	balancedSIPCallSurvives(t, false, syscall.SIGTERM)
}

func balancedSIPCallSurvives(t *testing.T, out bool, sig syscall.Signal) {
	b := newBalanced(t)
	user := dial(t, regUser+"@example.com", urls(b.nodes, 0), nil)
	var call *client.Call
	var sipp *sippRun
	if out {
		sipp = runSipp(t, "uas_failover.xml", "")
		c, err := user.StartCall(tctx(t), "uas-"+strconv.Itoa(sipp.port)+"@example.com", offer)
		if err != nil {
			t.Fatal(err)
		}
		call = c
	} else {
		sipp = runSipp(t, "uac_failover.xml", b.registrar, "-s", regUser)
		in := event(t, user, client.EventIncomingCall)
		call = in.Call
		if err := call.Answer(tctx(t), answer); err != nil {
			t.Fatal(err)
		}
	}
	untilCallEvent(t, user, client.CallEstablished)
	untilMetric(t, "jsonrtc_call_records", 1, b.nodes[0].metrics)

	killed := time.Now()
	b.nodes[0].signal(sig)
	resumedBy(t, user, time.Now().Add(30*time.Second))
	untilMetric(t, "jsonrtc_sip_calls_adopted_total", 1, b.nodes[1].metrics, b.nodes[2].metrics)
	b.nodes[0].wait(t, sig)
	ro := untilCallEvent(t, user, client.CallReOffer)
	// The failover time of docs/cluster.md, "SIP deployments".
	t.Logf("SIPp's re-INVITE reached the user through the balancer and the new node %v after the %s", time.Since(killed).Round(time.Millisecond),
		map[syscall.Signal]string{syscall.SIGKILL: "kill -9", syscall.SIGTERM: "SIGTERM (drain)"}[sig])
	sippGoesOn(t, user, call, ro, answer)
	sipp.wait(t)
	if n := b.relayedTo(t, "BYE", b.sip[1]) + b.relayedTo(t, "BYE", b.sip[2]); n != 1 {
		t.Errorf("the balancer relayed %d BYEs to n2 or n3, want SIPp's", n)
	}
}

// TestBalancedInviteToDeadNode (issue 15): n1, the node of
// open@example.com, is killed (kill -9) and SIPp calls the user at once,
// before the session resumed elsewhere: the registrar routes the INVITE
// by the binding's Path to the balancer and on to the dead n1. n1 does
// not answer within the failover time; the balancer sends the INVITE,
// its Request-URI now the To's AOR, to a live node (failure_route
// PATH_NODE). No node can ring the session before it resumed: the node
// refuses 480 with Retry-After, and SIPp's call after the resume rings
// the user through the new node's binding.
func TestBalancedInviteToDeadNode(t *testing.T) {
	t.Parallel()
	b := newBalanced(t)
	// The user's resume must not race the INVITE (both wait for n1's
	// lease to expire; a session resumed first rings the call instead of
	// the 480 this test is about): the client reaches n2 only through a
	// gate opened once SIPp had its 480.
	gate := newGate(t, b.nodes[1].addr)
	user := dial(t, regUser+"@example.com", nil, func(o *client.Options) {
		o.URLs = []string{b.nodes[0].ws(), "ws://" + gate.addr + "/ws/webrtc/test"}
	})
	b.checkBinding(t, b.sip[0])

	b.nodes[0].stop(t, syscall.SIGKILL)
	killed := time.Now()
	runSipp(t, "uac_retry_after.xml", b.registrar, "-s", regUser).wait(t)
	t.Logf("SIPp had its 480 %v after the kill -9", time.Since(killed).Round(time.Millisecond))
	if n := b.relayed(t, "INVITE", "", b.sip[0]); n != 1 {
		t.Errorf("the balancer relayed %d INVITEs to the dead n1, want 1 (the Path's)", n)
	}
	aor := "sip:" + regUser + "@example.com"
	if n := b.relayed(t, "INVITE", aor, b.sip[1]) + b.relayed(t, "INVITE", aor, b.sip[2]); n != 1 {
		t.Errorf("the balancer relayed %d INVITEs of the AOR to n2 or n3, want 1", n)
	}

	gate.open.Store(true)
	resumedBy(t, user, time.Now().Add(30*time.Second))
	t.Logf("the session resumed %v after the kill -9", time.Since(killed).Round(time.Millisecond))
	sippCall(t, b.registrar, user)
}

// TestBalancedSubscriptionsMoveOnKill (issue 15): the SIP subscriptions
// of subscriptions_test.go through the balancer. open@example.com, on
// n1, watches a SIPp presentity and subscribes to a SIPp mailbox: both
// SUBSCRIBEs go n1 -> balancer -> registrar -> SIPp, record-routed by
// the balancer, and the NOTIFYs come back through it to n1. n1 is
// killed (kill -9): the node that takes the session over subscribes
// again through the balancer, and the new dialogs' NOTIFYs reach the
// user through the balancer and that node.
func TestBalancedSubscriptionsMoveOnKill(t *testing.T) {
	t.Parallel()
	pres := startNotifier(t, "presence_moved.xml")
	mwi := startNotifier(t, "mwi_moved.xml")
	b := newBalanced(t)
	user := dial(t, regUser+"@example.com", urls(b.nodes, 0), nil)
	subscribeBoth(t, user, pres, mwi)
	if n := b.relayed(t, "SUBSCRIBE", "uas-", b.registrar); n != 2 {
		t.Errorf("the balancer relayed %d SUBSCRIBEs upstream, want n1's 2", n)
	}
	if n := b.relayedTo(t, "NOTIFY", b.sip[0]); n < 2 {
		t.Errorf("the balancer relayed %d NOTIFYs to n1, want at least the first of each", n)
	}

	b.nodes[0].stop(t, syscall.SIGKILL)
	waitSubscriptions(t, user, true, map[string]string{"w1": "dialog 2", "m1": "2/8 (0/2)"})
	if n := b.relayed(t, "SUBSCRIBE", "uas-", b.registrar); n < 4 {
		t.Errorf("the balancer relayed %d SUBSCRIBEs upstream, want n1's 2 and the new node's 2", n)
	}
	if n := b.relayedTo(t, "NOTIFY", b.sip[1]) + b.relayedTo(t, "NOTIFY", b.sip[2]); n < 2 {
		t.Errorf("the balancer relayed %d NOTIFYs to n2 or n3, want at least the new dialogs' first", n)
	}
}

// gate is a proxy to a node's HTTP address that refuses every request
// (503) until open: a test holds a client's resume on it.
type gate struct {
	addr string
	open atomic.Bool
}

func newGate(t *testing.T, to string) *gate {
	t.Helper()
	g := &gate{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: to})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.open.Load() {
			http.Error(w, "gate closed", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.addr = srv.Listener.Addr().String()
	return g
}
