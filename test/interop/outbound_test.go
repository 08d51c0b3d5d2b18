package interop

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/sipgw"
)

var seenFlow = regexp.MustCompile(`SEEN FLOW (\S+) (\d+) (\S+) (\S+) supported=(.*)`)

// flowsSeen returns the source address and Supported of every REGISTER
// from user that the outbound Kamailio received, in order.
func (k *Kamailio) flowsSeen(t *testing.T, user string) (sources, supported []string) {
	t.Helper()
	for line := range strings.SplitSeq(k.proc.out.String(), "\n") {
		m := seenFlow.FindStringSubmatch(line)
		if m == nil || m[1] != user {
			continue
		}
		sources, supported = append(sources, m[3]+" "+m[4]), append(supported, strings.TrimSpace(m[5]))
	}
	return sources, supported
}

// SIP outbound (RFC 5626) against Kamailio's registrar over TCP: the
// REGISTER carries reg-id=1 with +sip.instance and Supported: outbound;
// the 200 says Require: outbound with a Flow-Timer, and the gateway's
// CRLF keepalives get Kamailio's pongs. With Kamailio stopped (SIGSTOP)
// past the 10 s pong timeout, the flow is taken for dead and the
// gateway registers again at once on a new connection, which Kamailio
// answers once it runs again (SIGCONT): the registration goes on.
func TestOutboundFlowKeepaliveAndRecovery(t *testing.T) {
	k := startKamailioOpts(t, kamailioOpts{Workers: 1, LogRequests: true, Outbound: true, FlowTimer: 2})
	g := newGateway(t, k, func(c *sipgw.Config) {
		c.Listen = sipgw.ListenConfig{TCP: "127.0.0.1:0"}
		c.Transport = "tcp"
	})
	r, err := g.Register(ctxT(t), "open@"+domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Release(ctxT(t)) })
	if !r.Outbound() || r.FlowTimer() != 2*time.Second {
		t.Fatalf("outbound %v, Flow-Timer %v: want Require: outbound and Flow-Timer 2 s", r.Outbound(), r.FlowTimer())
	}
	for line := range strings.SplitSeq(k.logged(t), "\n") {
		if m := seenContact.FindStringSubmatch(line); m != nil && m[1] == "open" && !strings.Contains(line, "reg-id=1") {
			t.Errorf("REGISTER Contact without reg-id=1: %s", line)
		}
	}
	sources, supported := k.flowsSeen(t, "open")
	if len(sources) != 1 || !strings.Contains(supported[0], "outbound") || !strings.HasPrefix(sources[0], "tcp ") {
		t.Fatalf("REGISTERs seen: %v %v", sources, supported)
	}
	untilWithin(t, 20*time.Second, "two keepalives answered", func() bool { return r.FlowStats().Answered >= 2 })

	pgid := -k.proc.cmd.Process.Pid
	if err := syscall.Kill(pgid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pgid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	untilWithin(t, 30*time.Second, "the flow taken for dead", func() bool { return r.FlowStats().Failed >= 1 })
	resume()
	untilWithin(t, 30*time.Second, "the flow recovered", func() bool { return r.FlowStats().Recovered >= 1 })
	select {
	case <-r.Lost():
		t.Fatalf("registration lost: %v", r.Err())
	default:
	}
	sources, supported = k.flowsSeen(t, "open")
	if len(sources) != 2 || sources[1] == sources[0] || !strings.Contains(supported[1], "outbound") {
		t.Fatalf("REGISTERs seen: %v %v, want a second one from a new connection", sources, supported)
	}
	answered := r.FlowStats().Answered
	untilWithin(t, 20*time.Second, "keepalives answered on the new flow", func() bool { return r.FlowStats().Answered > answered })
	t.Logf("flows %v, stats %+v", sources, r.FlowStats())
}
