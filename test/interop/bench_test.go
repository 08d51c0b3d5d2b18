package interop

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
)

// benchConcurrency is how many calls are set up at once in each path.
// SIPp's UAC needs more in flight to reach its ceiling (it starts and
// advances calls on a scheduler tick of a few milliseconds), so the SIPp
// paths also run with benchWideConcurrency.
const (
	benchConcurrency     = 10
	benchWideConcurrency = 50
)

// BenchmarkSIPCallSetups measures call setups per second (web start ->
// INVITE -> SIPp UAS 200 -> response 200 -> complete/ACK, then
// shutdown/BYE) through the gateway, and, as comparators, SIPp UAC doing
// the same through the same Kamailio and straight to the UAS. Setup
// latency is start sent -> 200 received by the Go client, and INVITE
// sent -> 200 received for SIPp (from its -trace_msg log, microsecond
// timestamps). At the end it logs each path's ratio to the Kamailio path
// and what the gateway adds at 500 setups/s. Run with a fixed count, e.g.:
//
//	go test -run '^$' -bench SIPCallSetups -benchtime 2000x ./test/interop/
func BenchmarkSIPCallSetups(b *testing.B) {
	k := startKamailio(b)
	res := map[string]setupResult{}
	run := func(name string, f func(*testing.B) setupResult) {
		b.Run(name, func(b *testing.B) { res[name] = f(b) })
	}
	// Via Kamailio and straight to the UAS (the gateway's outbound proxy
	// set to the UAS itself), as fast as each goes.
	run("gateway", func(b *testing.B) setupResult { return benchGateway(b, k, false, 0, benchConcurrency) })
	run("gateway-direct", func(b *testing.B) setupResult { return benchGateway(b, k, true, 0, benchConcurrency) })
	run("gateway-l50", func(b *testing.B) setupResult { return benchGateway(b, k, false, 0, benchWideConcurrency) })
	run("sipp", func(b *testing.B) setupResult { return benchSipp(b, k, false, 0, benchConcurrency) })
	run("sipp-direct", func(b *testing.B) setupResult { return benchSipp(b, k, true, 0, benchConcurrency) })
	run("sipp-l50", func(b *testing.B) setupResult { return benchSipp(b, k, false, 0, benchWideConcurrency) })
	run("sipp-direct-l50", func(b *testing.B) setupResult { return benchSipp(b, k, true, 0, benchWideConcurrency) })
	// At a fixed 500 setups/s, well below saturation, the latencies
	// compare what the gateway adds.
	run("gateway-500cps", func(b *testing.B) setupResult { return benchGateway(b, k, false, 500, benchConcurrency) })
	run("gateway-direct-500cps", func(b *testing.B) setupResult { return benchGateway(b, k, true, 500, benchConcurrency) })
	run("sipp-500cps", func(b *testing.B) setupResult { return benchSipp(b, k, false, 500, benchConcurrency) })
	run("sipp-direct-500cps", func(b *testing.B) setupResult { return benchSipp(b, k, true, 500, benchConcurrency) })
	for _, base := range []string{"sipp", "sipp-l50"} {
		bs, ok := res[base]
		if !ok {
			continue
		}
		for _, n := range []string{"gateway", "gateway-direct", "gateway-l50"} {
			if r, ok := res[n]; ok {
				b.Logf("%s / %s: %.2f (%.0f / %.0f setups/s)", n, base, r.rate/bs.rate, r.rate, bs.rate)
			}
		}
	}
	for _, p := range [][2]string{{"gateway-direct-500cps", "sipp-direct-500cps"}, {"gateway-500cps", "sipp-500cps"}, {"gateway-500cps", "sipp-direct-500cps"}} {
		g, gok := res[p[0]]
		s, sok := res[p[1]]
		if gok && sok {
			b.Logf("added latency %s vs %s: p50 %.2f ms, p99 %.2f ms", p[0], p[1], g.p50-s.p50, g.p99-s.p99)
		}
	}
}

// setupResult is one path's rate and setup latency quantiles (ms).
type setupResult struct{ rate, p50, p99 float64 }

// benchGateway sets up b.N calls through the gateway, conc at a time (one
// client each), as fast as they go or, with rate, starting rate calls a second.
// direct sends the INVITEs straight to the UAS rather than via Kamailio
// (which stays the registrar).
func benchGateway(b *testing.B, k *Kamailio, direct bool, rate, conc int) setupResult {
	uas := startBenchUAS(b)
	var mods []func(*gateway.Config)
	identity := "open@" + domain
	if direct {
		mods = append(mods, func(c *gateway.Config) { c.SIP.OutboundProxy = "sip:127.0.0.1:" + strconv.Itoa(uas) })
		// The outbound proxy takes every request outside a dialog, a
		// REGISTER too, which the UAS would not answer: an identity
		// outside the SIP domain calls without registering.
		identity = "bench@web.test"
	}
	w := startWebGateway(b, k, mods...)
	clients := make([]*client.Client, conc)
	for i := range clients {
		clients[i] = w.connect(b, identity, func(o *client.Options) { o.EventBuffer = 64 })
	}
	target := "uas-" + strconv.Itoa(uas) + "@" + domain
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	next := make(chan struct{}, b.N)
	pacer := func() {
		defer close(next)
		if rate == 0 {
			for range b.N {
				next <- struct{}{}
			}
			return
		}
		// A load generator's clock, not synchronisation: one call start
		// every 1/rate seconds.
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for range b.N {
			<-tick.C
			next <- struct{}{}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	go pacer()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for range next {
				t0 := time.Now()
				out, err := c.StartCall(ctxT(b), target, offer)
				if err != nil {
					b.Error(err)
					return
				}
				if !benchAnswered(b, c) {
					return
				}
				d := time.Since(t0)
				if err := out.Hangup(ctxT(b)); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	return reportSetups(b, len(lat), elapsed, lat)
}

// benchSipp sets up b.N calls with a SIPp UAC, through Kamailio or
// direct to the UAS, conc at a time, as fast as they go or at
// rate calls a second. Only the paced runs log messages (-trace_msg) for
// their latencies: the log costs SIPp throughput.
func benchSipp(b *testing.B, k *Kamailio, direct bool, rate, conc int) setupResult {
	uas := startBenchUAS(b)
	dir := b.TempDir()
	copyScenario(b, "uac_bench.xml", dir)
	port := freePort(b)
	remote := k.Addr
	if direct {
		remote = "127.0.0.1:" + strconv.Itoa(uas)
	}
	r := "100000"
	if rate > 0 {
		r = strconv.Itoa(rate)
	}
	args := []string{"sipp", "-sf", "uac_bench.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-s", "uas-" + strconv.Itoa(uas), "-m", strconv.Itoa(b.N), "-l", strconv.Itoa(conc),
		"-r", r, "-rp", "1000", "-buff_size", "1048576", "-nostdin", "-timeout", "300s", "-timeout_error",
		"-max_recv_loops", "1000"}
	if rate > 0 {
		args = append(args, "-trace_msg")
	}
	b.ResetTimer()
	begin := time.Now()
	p := start(b, "sipp uac_bench.xml", dir, append(args, remote)...)
	if code := p.wait(b, 310*time.Second); code != 0 {
		b.Fatalf("sipp exit code %d\n%s", code, tail(p.out.String(), 3000))
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	var lat []time.Duration
	if rate > 0 {
		lat = readTraceLatencies(b, dir)
	}
	return reportSetups(b, b.N, elapsed, lat)
}

// benchAnswered waits for the answer of c's call and the complete the
// client sends by itself at once.
func benchAnswered(b *testing.B, c *client.Client) bool {
	for {
		ev := webNext(b, c, client.EventCall)
		switch ev.CallEvent {
		case client.CallRinging, client.CallEarlyMedia, client.CallAnswered:
		case client.CallEstablished: // right after the answer: complete sent
			return true
		default:
			b.Errorf("call event %v (code %d)", ev.CallEvent, ev.Code)
			return false
		}
	}
}

// startBenchUAS runs SIPp answering every call (uas_bench.xml) until the
// benchmark ends, and returns its port.
func startBenchUAS(b *testing.B) int {
	need(b, "sipp")
	dir := b.TempDir()
	copyScenario(b, "uas_bench.xml", dir)
	port := freePort(b)
	p := start(b, "sipp uas_bench.xml", dir, "sipp", "-sf", "uas_bench.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-buff_size", "1048576", "-nostdin", "-max_recv_loops", "1000")
	waitUDPBound(b, p, port)
	return port
}

func copyScenario(b *testing.B, name, dir string) {
	data, err := os.ReadFile(filepath.Join("scenarios", name))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		b.Fatal(err)
	}
}

// readTraceLatencies pairs, in SIPp's -trace_msg log, each INVITE sent
// with the first 200 to it received, by Call-ID. SIPp stamps each logged
// message with gettimeofday in microseconds (its -trace_rtt counts whole
// scheduler ticks of several milliseconds).
func readTraceLatencies(b *testing.B, dir string) []time.Duration {
	m, _ := filepath.Glob(filepath.Join(dir, "*_messages.log"))
	if len(m) == 0 {
		b.Fatal("no SIPp message log")
	}
	f, err := os.Open(m[0])
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lat, err := traceLatencies(f)
	if err != nil {
		b.Fatal(err)
	}
	return lat
}

// traceSeparator starts each message of a SIPp -trace_msg log, followed
// by the local time it was sent or received.
const traceSeparator = "----------------------------------------------- "

func traceLatencies(r io.Reader) ([]time.Duration, error) {
	invites := map[string]time.Time{}
	var out []time.Duration
	var (
		at        time.Time
		sent      bool
		first     string // the request or status line
		callID    string
		inMessage bool
	)
	flush := func() {
		if !inMessage || callID == "" {
			return
		}
		switch {
		case sent && strings.HasPrefix(first, "INVITE "):
			if _, ok := invites[callID]; !ok { // a retransmission keeps the first
				invites[callID] = at
			}
		case !sent && strings.HasPrefix(first, "SIP/2.0 200 "):
			if t0, ok := invites[callID]; ok {
				out = append(out, at.Sub(t0))
				delete(invites, callID) // the BYE's 200 follows on the same Call-ID
			}
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if ts, ok := strings.CutPrefix(line, traceSeparator); ok {
			flush()
			t, err := time.ParseInLocation("2006-01-02 15:04:05.000000", strings.TrimSpace(ts), time.Local)
			if err != nil {
				return nil, fmt.Errorf("sipp message log: %w", err)
			}
			at, inMessage, first, callID, sent = t, true, "", "", false
			continue
		}
		if !inMessage {
			continue
		}
		switch {
		case strings.Contains(line, " message sent ") && first == "":
			sent = true
		case strings.Contains(line, " message received ") && first == "":
			sent = false
		case first == "" && strings.TrimSpace(line) != "":
			first = strings.TrimSpace(line)
		case callID == "" && len(line) > 8 && strings.EqualFold(line[:8], "call-id:"):
			callID = strings.TrimSpace(line[8:])
		}
	}
	flush()
	return out, sc.Err()
}

// reportSetups reports the rate and, when measured, the latency
// quantiles, and returns them for the comparisons.
func reportSetups(b *testing.B, n int, elapsed time.Duration, lat []time.Duration) setupResult {
	if n == 0 {
		b.Fatal("no call set up")
	}
	r := setupResult{rate: float64(n) / elapsed.Seconds()}
	b.ReportMetric(r.rate, "setups/s")
	if len(lat) > 0 {
		slices.Sort(lat)
		q := func(p float64) float64 {
			return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
		}
		r.p50, r.p99 = q(0.50), q(0.99)
		b.ReportMetric(r.p50, "p50-ms")
		b.ReportMetric(r.p99, "p99-ms")
	}
	b.ReportMetric(0, "ns/op")
	return r
}
