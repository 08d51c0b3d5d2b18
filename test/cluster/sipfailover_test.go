package cluster

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

var sipFailoverCalls = flag.Int("sipfailover.calls", 20, "SIP calls of BenchmarkSIPFailover")

// BenchmarkSIPFailover measures the failover of SIP calls (issue 15,
// docs/benchmarks.md): -sipfailover.calls web users on n1, each in a
// call from SIPp through Kamailio (uac_failtime.xml); n1 is killed
// (kill -9) or drained (SIGTERM), and for each call the time from the
// signal to SIPp's first in-dialog request, an INFO sent as soon as
// the adopter's target refresh reached SIPp, arriving at the web user
// through the new node. Each iteration is a new cluster: run it with
// -benchtime 1x (or a few).
func BenchmarkSIPFailover(b *testing.B) {
	for _, c := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill", syscall.SIGKILL}, {"drain", syscall.SIGTERM}} {
		b.Run(c.name, func(b *testing.B) {
			var info, resumed []time.Duration
			for range b.N {
				i, r := sipFailover(b, c.sig, *sipFailoverCalls)
				info, resumed = append(info, i...), append(resumed, r...)
			}
			q := quantiles(info)
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
			b.ReportMetric(q(0), "min-ms")
			r := quantiles(resumed)
			b.ReportMetric(r(0.5), "resume-p50-ms")
			b.Logf("%s: %d calls, lease_ttl 4s: INFO at the user min %.0f p50 %.0f p99 %.0f max %.0f ms; resumed min %.0f p50 %.0f max %.0f ms",
				c.name, len(info), q(0), q(0.5), q(0.99), q(1), r(0), r(0.5), r(1))
		})
	}
}

// quantiles sorts d and returns its quantile function, in ms.
func quantiles(d []time.Duration) func(p float64) float64 {
	slices.Sort(d)
	return func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))]) / float64(time.Millisecond) }
}

// sipFailover runs one failover of calls SIP calls with sig and returns
// each call's time from the signal to SIPp's INFO at its web user, and
// to its user's resume.
func sipFailover(b *testing.B, sig syscall.Signal, calls int) (info, resumed []time.Duration) {
	b.StopTimer()
	kaddr, nodes := kamailioCluster(b, "  outbound_proxy: sip:{kamailio}\n")
	users := make([]*client.Client, calls)
	names := make([]string, calls)
	for i := range users {
		names[i] = fmt.Sprintf("f%02d", i)
		users[i] = dial(b, names[i]+"@example.com", urls(nodes, 0), nil)
	}
	uac := runSipp(b, "uac_failtime.xml", kaddr, "-inf", sippUsers(b, names), "-m", strconv.Itoa(calls), "-l", strconv.Itoa(calls),
		"-r", strconv.Itoa(calls), "-timeout", "150s")
	for i, u := range users {
		in := event(b, u, client.EventIncomingCall)
		if err := in.Call.Ring(tctx(b)); err != nil {
			b.Fatalf("%s: %v", names[i], err)
		}
		if err := in.Call.Answer(tctx(b), answer); err != nil {
			b.Fatalf("%s: %v", names[i], err)
		}
	}
	for _, u := range users {
		callReaches(b, u, client.CallEstablished, 15*time.Second)
	}

	// Each user's events are read at once on its own goroutine: the INFO's
	// arrival is timed as the client emits it, not when the loop below
	// gets round to it.
	got := make([]chan arrival, calls)
	for i, u := range users {
		got[i] = make(chan arrival, 1)
		go func() { got[i] <- firstDTMF(u, 90*time.Second) }()
	}
	b.StartTimer()
	start := time.Now()
	nodes[0].signal(sig)
	for i := range users {
		a := <-got[i]
		if a.err != nil {
			b.Fatalf("%s: %v", names[i], a.err)
		}
		info, resumed = append(info, a.at.Sub(start)), append(resumed, a.resumed.Sub(start))
	}
	b.StopTimer()
	nodes[0].wait(b, sig)
	for _, u := range users {
		callReaches(b, u, client.CallEnded, 30*time.Second)
	}
	uac.wait(b)
	// A node killed while it led the leases' bucket costs an election
	// and a lease TTL of grace (docs/cluster.md, "Leases"): said per run,
	// the figures differ by that.
	led := false
	for _, n := range nodes[1:] {
		data, _ := os.ReadFile(n.log)
		led = led || strings.Contains(string(data), "lease not refreshed")
	}
	q, r := quantiles(slices.Clone(info)), quantiles(slices.Clone(resumed))
	b.Logf("%v: leases' leader lost: %v; INFO at the user min %.0f p50 %.0f max %.0f ms; resumed min %.0f p50 %.0f max %.0f ms",
		sig, led, q(0), q(0.5), q(1), r(0), r(0.5), r(1))
	return info, resumed
}

// arrival is when a user's session resumed and SIPp's INFO came, or why
// it did not.
type arrival struct {
	resumed, at time.Time
	err         error
}

// firstDTMF waits up to d for c's first DTMF call event and returns its
// time and its resume's; any other call event but figures is an error (the call did not
// survive its node).
func firstDTMF(c *client.Client, d time.Duration) (a arrival) {
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-c.Events():
			switch {
			case !ok || ev.Kind == client.EventClosed:
				a.err = errors.New("closed before the INFO")
				return a
			case ev.Kind == client.EventResumed:
				a.resumed = time.Now()
			case ev.Kind != client.EventCall || ev.CallEvent == client.CallFigures:
			case ev.CallEvent == client.CallDTMF:
				a.at = time.Now()
				return a
			default:
				a.err = fmt.Errorf("call event %v (%d %s) before the INFO", ev.CallEvent, ev.Code, ev.Reason)
				return a
			}
		case <-timeout:
			a.err = fmt.Errorf("no INFO within %v", d)
			return a
		}
	}
}
