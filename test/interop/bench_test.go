package interop

import (
	"bufio"
	"context"
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
	"github.com/jsonrtc/jsonrtc/protocol"
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
	// Sized as in production for this machine: a UDP worker per core.
	// Nothing in its route blocks (no database, no DNS), so more workers
	// only add switches; one caps the proxy path near 1,300 setups/s.
	k := startKamailioWorkers(b, 2)
	res := map[string]setupResult{}
	run := func(name string, f func(*testing.B) setupResult) {
		b.Run(name, func(b *testing.B) { res[name] = f(b) })
	}
	// Via Kamailio and straight to the UAS (the gateway's outbound proxy
	// set to the UAS itself), as fast as each goes.
	run("gateway", func(b *testing.B) setupResult { return benchGateway(b, k, false, 0, benchConcurrency, offer) })
	run("gateway-direct", func(b *testing.B) setupResult { return benchGateway(b, k, true, 0, benchConcurrency, offer) })
	run("gateway-l50", func(b *testing.B) setupResult { return benchGateway(b, k, false, 0, benchWideConcurrency, offer) })
	run("sipp", func(b *testing.B) setupResult { return benchSipp(b, k, false, 0, benchConcurrency) })
	run("sipp-direct", func(b *testing.B) setupResult { return benchSipp(b, k, true, 0, benchConcurrency) })
	run("sipp-l50", func(b *testing.B) setupResult { return benchSipp(b, k, false, 0, benchWideConcurrency) })
	run("sipp-direct-l50", func(b *testing.B) setupResult { return benchSipp(b, k, true, 0, benchWideConcurrency) })
	// At a fixed 500 setups/s, well below saturation, the latencies
	// compare what the gateway adds.
	run("gateway-500cps", func(b *testing.B) setupResult { return benchGateway(b, k, false, 500, benchConcurrency, offer) })
	run("gateway-direct-500cps", func(b *testing.B) setupResult { return benchGateway(b, k, true, 500, benchConcurrency, offer) })
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
// (which stays the registrar). Paced runs tag each call with an X-App
// header, which the UAS's message log shows, to split the latency into
// its way out and back. Each call offers sdp; mods change the gateway's
// configuration.
func benchGateway(b *testing.B, k *Kamailio, direct bool, rate, conc int, sdp string, mods ...func(*gateway.Config)) setupResult {
	traced := rate > 0
	uas := startBenchUAS(b, traced)
	identity := "open@" + domain
	if direct {
		mods = append(mods, func(c *gateway.Config) { c.SIP.OutboundProxy = "sip:127.0.0.1:" + strconv.Itoa(uas.port) })
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
	target := "uas-" + strconv.Itoa(uas.port) + "@" + domain
	var (
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, b.N)
		seq    int
		tagged = map[string][2]time.Time{} // X-App -> start sent, answer received
	)
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
	// One context for the run: ctxT's timeout and cleanup per call would
	// cost the load generator more than some of what it measures.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	go pacer()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for range next {
				var ext []protocol.Ext
				if traced {
					mu.Lock()
					seq++
					ext = []protocol.Ext{{Name: "X-App", Value: "bench-" + strconv.Itoa(seq)}}
					mu.Unlock()
				}
				t0 := time.Now()
				out, err := c.StartCall(ctx, target, sdp, ext...)
				if err != nil {
					b.Error(err)
					return
				}
				if !benchAnswered(b, c) {
					return
				}
				t1 := time.Now()
				if err := out.Hangup(ctx); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				lat = append(lat, t1.Sub(t0))
				if traced {
					tagged[ext[0].Value] = [2]time.Time{t0, t1}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	if traced {
		// The last BYEs may still be on their way: the UAS stops once
		// the gateway is done with them.
		if err := w.g.WaitIdle(ctx); err != nil {
			b.Fatal(err)
		}
		var out, back []time.Duration
		for _, c := range uas.trace(b) {
			if t, ok := tagged[c.tag]; ok && !c.ok.IsZero() {
				out, back = append(out, c.invite.Sub(t[0])), append(back, t[1].Sub(c.ok))
			}
		}
		reportLegs(b, out, back)
	}
	return reportSetups(b, len(lat), elapsed, lat)
}

// benchSipp sets up b.N calls with a SIPp UAC, through Kamailio or
// direct to the UAS, conc at a time, as fast as they go or at
// rate calls a second. Only the paced runs log messages (-trace_msg) for
// their latencies: the log costs SIPp throughput.
func benchSipp(b *testing.B, k *Kamailio, direct bool, rate, conc int) setupResult {
	traced := rate > 0
	uas := startBenchUAS(b, traced)
	dir := b.TempDir()
	copyScenario(b, "uac_bench.xml", dir)
	port := freePort(b)
	remote := k.Addr
	if direct {
		remote = "127.0.0.1:" + strconv.Itoa(uas.port)
	}
	r := "100000"
	if rate > 0 {
		r = strconv.Itoa(rate)
	}
	args := []string{"sipp", "-sf", "uac_bench.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-s", "uas-" + strconv.Itoa(uas.port), "-m", strconv.Itoa(b.N), "-l", strconv.Itoa(conc),
		"-r", r, "-rp", "1000", "-buff_size", "1048576", "-nostdin", "-timeout", "300s", "-timeout_error",
		"-max_recv_loops", "1000"}
	if traced {
		args = append(args, "-trace_msg")
	}
	// The rate is SIPp's own (its statistics file, -trace_stat): a clock
	// started here would count SIPp's start-up and exit, which the
	// gateway paths, timed from their first call to their last, do not
	// pay.
	args = append(args, "-trace_stat", "-fd", "1")
	b.ResetTimer()
	p := start(b, "sipp uac_bench.xml", dir, append(args, remote)...)
	if code := p.wait(b, 310*time.Second); code != 0 {
		b.Fatalf("sipp exit code %d\n%s", code, tail(p.out.String(), 3000))
	}
	b.StopTimer()
	calls, elapsed := readSippStats(b, dir)
	if calls != b.N {
		b.Fatalf("sipp counted %d successful calls of %d", calls, b.N)
	}
	var lat []time.Duration
	if traced {
		uac := readTrace(b, dir)
		lat = setupLatencies(uac)
		var out, back []time.Duration
		for id, c := range uas.trace(b) { // a proxy keeps the Call-ID
			if u, ok := uac[id]; ok && !c.ok.IsZero() && !u.ok.IsZero() {
				out, back = append(out, c.invite.Sub(u.invite)), append(back, u.ok.Sub(c.ok))
			}
		}
		reportLegs(b, out, back)
	}
	return reportSetups(b, b.N, elapsed, lat)
}

// readSippStats reads the last line of the statistics file SIPp wrote in
// dir (-trace_stat): its successful calls and the time from its start to
// that line, written as it exits.
func readSippStats(b *testing.B, dir string) (calls int, elapsed time.Duration) {
	data, err := readLog(dir, "*_.csv")
	if err != nil {
		b.Fatalf("SIPp statistics file: %v", err)
	}
	calls, elapsed, err = sippStats(data)
	if err != nil {
		b.Fatal(err)
	}
	return calls, elapsed
}

// sippStats parses a -trace_stat file: a header of ';'-separated column
// names, then a line per dump. Times are "date<TAB>time<TAB>epoch.micros".
func sippStats(csv string) (calls int, elapsed time.Duration, err error) {
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if len(lines) < 2 {
		return 0, 0, fmt.Errorf("sipp statistics: %d lines", len(lines))
	}
	names, last := strings.Split(lines[0], ";"), strings.Split(lines[len(lines)-1], ";")
	col := map[string]string{}
	for i, n := range names {
		if i < len(last) {
			col[n] = last[i]
		}
	}
	epoch := func(name string) (time.Time, error) {
		f := strings.Split(col[name], "\t")
		sec, frac, _ := strings.Cut(f[len(f)-1], ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		us, err2 := strconv.ParseInt(frac, 10, 64)
		if err1 != nil || err2 != nil || len(frac) != 6 {
			return time.Time{}, fmt.Errorf("sipp statistics: %s %q", name, col[name])
		}
		return time.Unix(s, us*1000), nil
	}
	t0, err := epoch("StartTime")
	if err != nil {
		return 0, 0, err
	}
	t1, err := epoch("CurrentTime")
	if err != nil {
		return 0, 0, err
	}
	if calls, err = strconv.Atoi(col["SuccessfulCall(C)"]); err != nil {
		return 0, 0, fmt.Errorf("sipp statistics: SuccessfulCall(C) %q", col["SuccessfulCall(C)"])
	}
	return calls, t1.Sub(t0), nil
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

// benchUAS is SIPp answering every call (uas_bench.xml) until the
// benchmark ends, or until trace stops it.
type benchUAS struct {
	port int
	dir  string
	p    *proc
}

// startBenchUAS starts a benchUAS, logging its messages if traced.
func startBenchUAS(b *testing.B, traced bool) *benchUAS {
	need(b, "sipp")
	u := &benchUAS{dir: b.TempDir(), port: freePort(b)}
	copyScenario(b, "uas_bench.xml", u.dir)
	args := []string{"sipp", "-sf", "uas_bench.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(u.port),
		"-buff_size", "1048576", "-nostdin", "-max_recv_loops", "1000"}
	if traced {
		args = append(args, "-trace_msg")
	}
	u.p = start(b, "sipp uas_bench.xml", u.dir, args...)
	waitUDPBound(b, u.p, u.port)
	return u
}

// trace stops the UAS, so that its message log is complete, and reads
// the log.
func (u *benchUAS) trace(b *testing.B) map[string]*traceSetup {
	if err := u.p.cmd.Process.Signal(os.Interrupt); err != nil {
		b.Fatal(err)
	}
	// A first interrupt lets SIPp finish the calls it still counts as
	// running, which a call whose last message went astray can stretch
	// past the wait; a second one makes it quit at once (its logs are
	// written as it goes).
	select {
	case <-u.p.done:
	case <-time.After(5 * time.Second):
		_ = u.p.cmd.Process.Signal(os.Interrupt)
	}
	u.p.wait(b, 10*time.Second) // interrupted: its exit code says nothing
	return readTrace(b, u.dir)
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

// traceSetup is one call's setup in a SIPp -trace_msg log: when its
// first INVITE and the first 200 were sent or received, and its X-App
// header, by which the gateway benchmark tags its calls.
type traceSetup struct {
	invite, ok time.Time
	tag        string
}

// readTrace reads the -trace_msg log SIPp wrote in dir. SIPp stamps each
// logged message with gettimeofday in microseconds (its -trace_rtt counts
// whole scheduler ticks of several milliseconds).
func readTrace(b *testing.B, dir string) map[string]*traceSetup {
	m, _ := filepath.Glob(filepath.Join(dir, "*_messages.log"))
	if len(m) == 0 {
		b.Fatal("no SIPp message log")
	}
	f, err := os.Open(m[0])
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	calls, err := traceSetups(f)
	if err != nil {
		b.Fatal(err)
	}
	return calls
}

// traceSeparator starts each message of a SIPp -trace_msg log, followed
// by the local time it was sent or received.
const traceSeparator = "----------------------------------------------- "

// traceSetups parses a -trace_msg log into its calls, by Call-ID. Only
// the first INVITE (not its retransmissions) and the first 200 (the
// INVITE's: the BYE's comes later) count, whichever way they went.
func traceSetups(r io.Reader) (map[string]*traceSetup, error) {
	calls := map[string]*traceSetup{}
	var (
		at                 time.Time
		first, callID, tag string // first: the request or status line
		inMessage, header  bool
	)
	flush := func() {
		if !inMessage || callID == "" {
			return
		}
		c := calls[callID]
		if c == nil {
			c = &traceSetup{}
			calls[callID] = c
		}
		switch {
		case strings.HasPrefix(first, "INVITE ") && c.invite.IsZero():
			c.invite, c.tag = at, tag
		case strings.HasPrefix(first, "SIP/2.0 200 ") && c.ok.IsZero() && !c.invite.IsZero():
			c.ok = at
		}
	}
	field := func(line, name string) (string, bool) {
		if len(line) > len(name) && strings.EqualFold(line[:len(name)], name) {
			return strings.TrimSpace(line[len(name):]), true
		}
		return "", false
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
			at, inMessage, header, first, callID, tag = t, true, false, "", "", ""
			continue
		}
		if !inMessage {
			continue
		}
		switch {
		case !header && (strings.Contains(line, " message sent ") || strings.Contains(line, " message received ")):
			header = true
		case first == "" && strings.TrimSpace(line) != "":
			first = strings.TrimSpace(line)
		default:
			if v, ok := field(line, "call-id:"); ok && callID == "" {
				callID = v
			} else if v, ok := field(line, "x-app:"); ok && tag == "" {
				tag = v
			}
		}
	}
	flush()
	return calls, sc.Err()
}

// setupLatencies are the INVITE -> 200 times of the calls answered.
func setupLatencies(calls map[string]*traceSetup) []time.Duration {
	var out []time.Duration
	for _, c := range calls {
		if !c.invite.IsZero() && !c.ok.IsZero() {
			out = append(out, c.ok.Sub(c.invite))
		}
	}
	return out
}

// reportLegs reports the two halves of the setup latency: the INVITE's
// way out (start or INVITE sent -> INVITE received by the UAS) and the
// 200's way back (200 sent by the UAS -> received by the caller).
func reportLegs(b *testing.B, out, back []time.Duration) {
	if len(out) == 0 || len(back) == 0 {
		return
	}
	b.ReportMetric(quantileMs(out, 0.50), "out-p50-ms")
	b.ReportMetric(quantileMs(out, 0.99), "out-p99-ms")
	b.ReportMetric(quantileMs(back, 0.50), "back-p50-ms")
	b.ReportMetric(quantileMs(back, 0.99), "back-p99-ms")
}

// quantileMs is the p quantile of d in milliseconds; it sorts d.
func quantileMs(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(p*float64(len(d)-1))]) / float64(time.Millisecond)
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
		r.p50, r.p99 = quantileMs(lat, 0.50), quantileMs(lat, 0.99)
		b.ReportMetric(r.p50, "p50-ms")
		b.ReportMetric(r.p99, "p99-ms")
	}
	b.ReportMetric(0, "ns/op")
	return r
}
