package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// daemon is a jsonrtcd process, so that its memory and CPU can be read
// apart from the load's.
type daemon struct {
	cmd   *exec.Cmd
	addr  string
	pprof string // the daemon's -pprof address
	// metricsAddr is the daemon's -metrics-listen address.
	metricsAddr string
}

// startDaemon runs jsonrtcd; extra is YAML appended to its configuration
// (store: backend: memory, say).
func startDaemon(b testing.TB, extra ...string) *daemon {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "jsonrtcd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/jsonrtc/jsonrtc/cmd/jsonrtcd").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	addr, pprofAddr, metricsAddr := freeAddr(b), freeAddr(b), freeAddr(b)
	cfg := filepath.Join(dir, "bench.yaml")
	// Every load client dials from 127.0.0.1: no per-address cap.
	os.WriteFile(cfg, []byte("log:\n  level: warn\nsession:\n  max_sessions: 1000000\nhttp:\n  max_conns_per_address: -1\n"+strings.Join(extra, "")), 0o600)
	cmd := exec.Command(bin, "-config", cfg, "-listen", addr, "-pprof", pprofAddr, "-metrics-listen", metricsAddr,
		"-data", filepath.Join(dir, "data"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			b.Fatalf("jsonrtcd did not come up: %v", err)
		}
		time.Sleep(25 * time.Millisecond) // polling a process start-up: no event to wait on
	}
	return &daemon{cmd: cmd, addr: addr, pprof: pprofAddr, metricsAddr: metricsAddr}
}

// freeAddr returns a loopback address for jsonrtcd to listen on, reserved
// until b's cleanup (testenv.Port): a port 0 the daemon picked would have
// to be read back from a log the benchmarks keep quiet.
func freeAddr(b testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(testenv.Port(b))
}

// collect makes the daemon run a full garbage collection (the heap
// profile's gc=1), as its runtime does by itself at least every two
// minutes. Goroutine stacks only shrink at a collection, by half at most
// each time.
func (d *daemon) collect(b testing.TB) {
	resp, err := http.Get("http://" + d.pprof + "/debug/pprof/heap?gc=1")
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// rss returns the daemon's resident set size in bytes.
func (d *daemon) rss(b testing.TB) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// metrics scrapes the daemon's Prometheus gauges without labels.
func (d *daemon) metrics(b testing.TB) map[string]float64 {
	resp, err := http.Get("http://" + d.metricsAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// cpu returns the daemon's user+system CPU time.
func (d *daemon) cpu(b testing.TB) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// BenchmarkIdleSessions holds idle sessions on one jsonrtcd and reports
// its resident memory per session, once the sessions are open and again
// after they have been idle past readerIdleAfter and two forced garbage
// collections. "silent" clients send nothing after the connect exchange;
// "acking" ones then do what the SDK does on an idle session: acknowledge
// the connect response and send a text ping, so that each session's
// reader has processed a frame and written one.
// Needs a file-descriptor limit above the count (`ulimit -n`).
func BenchmarkIdleSessions(b *testing.B) {
	for _, n := range []int{10000, 50000} {
		for _, acking := range []bool{false, true} {
			name := strconv.Itoa(n) + "/silent"
			if acking {
				name = strconv.Itoa(n) + "/acking"
			}
			b.Run(name, func(b *testing.B) { benchIdle(b, n, acking) })
		}
	}
}

// readerIdleAfter is the gateway's (gateway/serve.go): how long a socket
// has nothing to read before its reader moves to a fresh goroutine.
const readerIdleAfter = 3 * time.Second

func benchIdle(b *testing.B, n int, acking bool) {
	d := startDaemon(b)
	base := d.rss(b)
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				c, err := idleSession(d.addr, i, acking)
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	lastFrame := time.Now()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	if err, _ := failed.Load().(error); err != nil {
		testenv.Require(b, fmt.Sprintf("room for %d sessions (%v)", n, err), "raise the file-descriptor limit: ulimit -n", false)
	}
	for b.Loop() {
	}
	report := func(suffix string) {
		b.ReportMetric(float64(d.rss(b)-base)/float64(n), "RSS-B/session"+suffix)
		m := d.metrics(b)
		b.ReportMetric(m["go_memstats_heap_inuse_bytes"]/float64(n), "heap-B/session"+suffix)
		b.ReportMetric(m["go_memstats_stack_inuse_bytes"]/float64(n), "stack-B/session"+suffix)
	}
	b.ReportMetric(float64(n), "sessions")
	b.ReportMetric(d.metrics(b)["go_goroutines"]/float64(n), "goroutines/session")
	report("")
	// What a long-running gateway shows: its idle readers have moved to
	// fresh goroutines (after readerIdleAfter with nothing to read) and
	// the runtime has collected, as it does at least every two minutes.
	// Not a sleep to synchronise: the idle time is part of what is
	// measured, and the daemon has no event for it; the wait runs from
	// the last session's last frame, plus a margin for its timer.
	time.Sleep(time.Until(lastFrame.Add(readerIdleAfter + 500*time.Millisecond)))
	d.collect(b)
	d.collect(b)
	report("-afterGC")
}

// idleSession opens one session, from one of several loopback source
// addresses so that 50,000 connections fit in the ephemeral port range.
func idleSession(addr string, i int, acking bool) (*websocket.Conn, error) {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%8))}
	hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws/webrtc/bench", &websocket.DialOptions{Subprotocols: []string{"jsonrtc"}, HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	id := "idle" + strconv.Itoa(i) + "@example.com"
	msg := `{"control":{"type":"request","package_type":"register","sequence":1,"version":"1.0"},"header":{"action":"connect","initiator":"` + id + `"},"payload":{}}`
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return nil, err
	}
	if _, _, err := c.Read(ctx); err != nil {
		return nil, err
	}
	if acking {
		ack := `{"control":{"type":"acknowledgement","package_type":"register","ack_sequence":1,"version":"1.0"},"header":{},"payload":{}}`
		if err := c.Write(ctx, websocket.MessageText, []byte(ack)); err != nil {
			return nil, err
		}
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			return nil, err
		}
		if _, data, err := c.Read(ctx); err != nil || string(data) != "pong" {
			return nil, fmt.Errorf("ping: %q %v", data, err)
		}
	}
	return c, nil
}

// BenchmarkRelay sends messaging frames between pairs of sessions through
// one jsonrtcd. Each of b.N round trips is two relayed messages: the send
// relayed to the receiver, and the receiver's 200 relayed back to the
// sender. It reports both counts per second and per CPU-second of the
// daemon (round-trips/..., relayed-msgs/...) and the sender's round-trip
// latency percentiles.
func BenchmarkRelay(b *testing.B) {
	// The store's cost: with nats (jsonrtcd's default) every frame is
	// written ahead before it leaves (docs/protocol.md §4.6).
	for _, backend := range []string{"memory", "nats"} {
		b.Run("store="+backend, func(b *testing.B) { benchmarkRelay(b, "store:\n  backend: "+backend+"\n", nil) })
	}
}

// BenchmarkRelayTransport is BenchmarkRelay (memory store) with every
// session on WebSocket, then on long-poll (docs/protocol.md §1.6): what
// a relayed message costs the gateway over each.
func BenchmarkRelayTransport(b *testing.B) {
	for _, t := range []string{client.TransportWebSocket, client.TransportLongPoll} {
		b.Run("transport="+t, func(b *testing.B) {
			benchmarkRelay(b, "store:\n  backend: memory\n", func(o *client.Options) { o.Transports = []string{t} })
		})
	}
}

func benchmarkRelay(b *testing.B, config string, mod func(*client.Options)) {
	const relayedPerTrip = 2 // the send and its 200
	d := startDaemon(b, config)
	const pairs = 50
	url := "ws://" + d.addr + "/ws/webrtc/bench"
	senders := make([]*client.Client, pairs)
	for i := range senders {
		rx := connect(b, url, "rx"+strconv.Itoa(i)+"@example.com", func(o *client.Options) {
			o.AutoAcceptMessages = true
			if mod != nil {
				mod(o)
			}
		})
		go func() {
			for range rx.Events() {
			}
		}()
		senders[i] = connect(b, url, "tx"+strconv.Itoa(i)+"@example.com", mod)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, pairs)
	cpu0 := d.cpu(b)
	start := time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			to := "rx" + strconv.Itoa(i) + "@example.com"
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if code, err := c.Send(context.Background(), to, "text/plain", "benchmark message body"); err != nil || code != protocol.CodeOK {
					b.Errorf("send: %d %v", code, err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	elapsed := time.Since(start)
	cpu := d.cpu(b) - cpu0
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	trips := float64(len(all))
	b.ReportMetric(trips/elapsed.Seconds(), "round-trips/s")
	b.ReportMetric(relayedPerTrip*trips/elapsed.Seconds(), "relayed-msgs/s")
	if cpu > 0 {
		b.ReportMetric(trips/cpu.Seconds(), "round-trips/cpu-s")
		b.ReportMetric(relayedPerTrip*trips/cpu.Seconds(), "relayed-msgs/cpu-s")
	}
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
