package interop

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// benchConcurrency is how many calls are set up at once, in both paths.
const benchConcurrency = 10

// BenchmarkSIPCallSetups measures call setups per second through the
// gateway (web start -> INVITE via Kamailio -> SIPp UAS 180/200 ->
// response 200 -> complete/ACK, then shutdown/BYE), and, as the
// comparator, SIPp UAC -> Kamailio -> SIPp UAS doing the same. Setup
// latency is start -> answer (INVITE -> 200 for SIPp). Run with a fixed
// count, e.g.:
//
//	go test -run '^$' -bench SIPCallSetups -benchtime 2000x ./test/interop/
func BenchmarkSIPCallSetups(b *testing.B) {
	k := startKamailio(b)
	b.Run("gateway", func(b *testing.B) { benchGateway(b, k, 0) })
	b.Run("sipp", func(b *testing.B) { benchSipp(b, k, 0) })
	// At a fixed 500 setups/s, well below saturation, the latencies of
	// the two paths compare what the gateway adds.
	b.Run("gateway-500cps", func(b *testing.B) { benchGateway(b, k, 500) })
	b.Run("sipp-500cps", func(b *testing.B) { benchSipp(b, k, 500) })
}

// benchGateway sets up b.N calls through the gateway, benchConcurrency at
// a time, as fast as they go or, with rate, starting rate calls a second.
func benchGateway(b *testing.B, k *Kamailio, rate int) {
	uas := startBenchUAS(b)
	w := startWebGateway(b, k)
	clients := make([]*client.Client, benchConcurrency)
	for i := range clients {
		clients[i] = w.connect(b, "open@"+domain, func(o *client.Options) { o.EventBuffer = 64 })
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
	reportSetups(b, len(lat), elapsed, lat)
}

// benchSipp sets up b.N calls with a SIPp UAC through Kamailio,
// benchConcurrency at a time, as fast as they go or at rate calls a
// second.
func benchSipp(b *testing.B, k *Kamailio, rate int) {
	uas := startBenchUAS(b)
	dir := b.TempDir()
	copyScenario(b, "uac_bench.xml", dir)
	port := freePort(b)
	r := "100000"
	if rate > 0 {
		r = strconv.Itoa(rate)
	}
	b.ResetTimer()
	begin := time.Now()
	p := start(b, "sipp uac_bench.xml", dir, "sipp", "-sf", "uac_bench.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-s", "uas-"+strconv.Itoa(uas), "-m", strconv.Itoa(b.N), "-l", strconv.Itoa(benchConcurrency),
		"-r", r, "-rp", "1000", "-buff_size", "1048576", "-nostdin", "-timeout", "300s", "-timeout_error",
		"-trace_rtt", "-rtt_freq", "1", "-max_recv_loops", "1000", k.Addr)
	if code := p.wait(b, 310*time.Second); code != 0 {
		b.Fatalf("sipp exit code %d\n%s", code, tail(p.out.String(), 3000))
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	lat := readRTT(b, dir)
	reportSetups(b, b.N, elapsed, lat)
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

// startBenchUAS runs SIPp answering every call (uas_answer.xml) until the
// benchmark ends, and returns its port.
func startBenchUAS(b *testing.B) int {
	need(b, "sipp")
	dir := b.TempDir()
	copyScenario(b, "uas_answer.xml", dir)
	port := freePort(b)
	p := start(b, "sipp uas_answer.xml", dir, "sipp", "-sf", "uas_answer.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
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

// readRTT reads SIPp's -trace_rtt file: one "date;rtt_ms;rtd" line a call.
func readRTT(b *testing.B, dir string) []time.Duration {
	m, _ := filepath.Glob(filepath.Join(dir, "*_rtt.csv"))
	if len(m) == 0 {
		b.Fatal("no rtt file")
	}
	f, err := os.Open(m[0])
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ";")
		if len(fields) < 2 {
			continue
		}
		ms, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue // the header line
		}
		out = append(out, time.Duration(ms*float64(time.Millisecond)))
	}
	return out
}

func reportSetups(b *testing.B, n int, elapsed time.Duration, lat []time.Duration) {
	if n == 0 || len(lat) == 0 {
		b.Fatal("no call set up")
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "setups/s")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
