package cluster

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

// single starts one jsonrtcd alone with the given store backend, each
// of mods applied to it before its start.
func single(b testing.TB, backend string, mods ...func(*node)) *node {
	b.Helper()
	dir := b.TempDir()
	n := &node{name: "alone", dir: filepath.Join(dir, "data"), config: filepath.Join(dir, "c.yaml"), log: filepath.Join(dir, "log")}
	for _, mod := range mods {
		mod(n)
	}
	n.addr = fmt.Sprintf("127.0.0.1:%d", testenv.Port(b))
	n.metrics = fmt.Sprintf("127.0.0.1:%d", testenv.Port(b))
	cfg := fmt.Sprintf("listen: %s\nmetrics: {listen: %s}\nlog: {level: warn}\nstore: {backend: %s, dir: %s}\n", n.addr, n.metrics, backend, n.dir)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.stop(b, 9) })
	n.launch(b)
	n.waitUp(b)
	return n
}

// storeWrites returns the session record writes the nodes made
// (jsonrtc_store_writes_total, every outcome), read from their metrics.
func storeWrites(nodes []*node) float64 {
	return metricSum(nodes, "jsonrtc_store_writes_total")
}

// storeRequestsByOp is the nodes' requests to the records' store by
// their labels (op and outcome), summed over the nodes.
func storeRequestsByOp(nodes []*node) map[string]float64 {
	return metricSeries(nodes, "jsonrtc_store_requests_total")
}

// storeRequests is the nodes' requests to the records' store, of every
// kind.
func storeRequests(nodes []*node) float64 {
	return metricSum(nodes, "jsonrtc_store_requests_total")
}

// metricSum returns the sum over the nodes of every series of the
// metric name, read from their /metrics.
func metricSum(nodes []*node, name string) float64 {
	var total float64
	for _, v := range metricSeries(nodes, name) {
		total += v
	}
	return total
}

// metricSeries returns each series of the metric name by its labels
// ("" for none), summed over the nodes, read from their /metrics.
func metricSeries(nodes []*node, name string) map[string]float64 {
	out := map[string]float64{}
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.metrics + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(body)) {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			labels, value := "", rest
			if rest[0] == '{' {
				labels, value, _ = strings.Cut(rest[1:], "} ")
			}
			v, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
			out[labels] += v
		}
	}
	return out
}

// cpu returns the CPU time the nodes' processes have used.
func cpu(nodes []*node) time.Duration {
	var total time.Duration
	for _, n := range nodes {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond // USER_HZ 100
	}
	return total
}

// profileEnv names a directory: set, every node serves pprof and the
// relay and call setup benchmarks write a CPU profile of each
// (NAME-NODE.pprof) of the first profileFor of their measured window
// (give them -benchtime enough to last that long), to see where a
// relayed message's or a call setup's CPU goes.
const profileEnv = "JSONRTC_BENCH_PROFILE"

const profileFor = 10 * time.Second

// profile starts a CPU profile of each node when profileEnv is set; the
// function it returns waits for them to be written.
func profile(b *testing.B, nodes []*node) func() {
	dir := os.Getenv(profileEnv)
	if dir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			// A profile cut short by its request's end is not written:
			// it runs its whole time.
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.pprof, int(profileFor.Seconds()))
			req, _ := http.NewRequest("GET", url, nil)
			f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "_")+"-"+n.name+".pprof"))
			if err != nil {
				b.Error(err)
				return
			}
			defer f.Close()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(f, resp.Body)
				resp.Body.Close()
			}
		})
	}
	return wg.Wait
}

// pairConfig is a configuration of the benchmarks of pairs of clients:
// one jsonrtcd alone on a store backend, or a three-node cluster with
// the pairs' two ends on one node or on two.
type pairConfig struct {
	name      string
	alone     string // a backend alone; "": the cluster
	otherNode bool
}

var pairConfigs = []pairConfig{
	{"alone/store=memory", "memory", false},
	{"alone/store=nats", "nats", false},
	{"cluster/same-node", "", false},
	{"cluster/two-nodes", "", true},
}

// start starts c's nodes and returns them and the nodes of the pairs'
// first and second ends.
func (c pairConfig) start(b *testing.B) (nodes []*node, from, to *node) {
	if c.alone != "" {
		nodes = []*node{single(b, c.alone)}
	} else {
		nodes = newCluster(b)
	}
	from, to = nodes[0], nodes[0]
	if c.otherNode {
		to = nodes[1]
	}
	return nodes, from, to
}

// BenchmarkClusterRelay: 20 pairs relay messages (each a round trip:
// the message and its delivery report) through one jsonrtcd alone
// (memory and nats stores) and through a three-node cluster (replicas
// 3) with both ends on one node and on two.
func BenchmarkClusterRelay(b *testing.B) {
	for _, c := range pairConfigs {
		for _, pairs := range []int{20, 100} {
			b.Run(fmt.Sprintf("%s/pairs=%d", c.name, pairs), func(b *testing.B) {
				nodes, from, to := c.start(b)
				var senders []*client.Client
				var wg sync.WaitGroup
				b.Cleanup(wg.Wait)
				for i := range pairs {
					senders = append(senders, dial(b, fmt.Sprintf("a%d", i), []string{from.ws()}, nil))
					r := dial(b, fmt.Sprintf("b%d", i), []string{to.ws()}, func(o *client.Options) { o.AutoAcceptMessages = true })
					// Each message is an event: undrained, the buffer's 256
					// filled and the client closed as a slow consumer, its
					// sender answered 480 past about 255 messages a pair.
					wg.Go(func() {
						for range r.Events() {
						}
					})
				}
				// Warm up: every directory view knows every session.
				for i, s := range senders {
					for {
						if code, _ := s.Send(tctx(b), fmt.Sprintf("b%d", i), "text/plain", "warm"); code == 200 {
							break
						}
						time.Sleep(50 * time.Millisecond)
					}
				}
				measurePairs(b, c, nodes, pairs, "msg", func(i int) (time.Duration, error) {
					t := time.Now()
					if code, err := senders[i].Send(context.Background(), fmt.Sprintf("b%d", i), "text/plain", "hello"); err != nil || code != 200 {
						return 0, fmt.Errorf("send: %d %v", code, err)
					}
					return time.Since(t), nil
				})
			})
		}
	}
}

// BenchmarkClusterResume: the time from a killed socket to the resumed
// session, with the client resuming on the same node and on another
// (a takeover).
func BenchmarkClusterResume(b *testing.B) {
	nodes := newCluster(b)
	for _, c := range []struct {
		name string
		urls []string
	}{
		{"same-node", urls(nodes, 0)[:1]},
		{"other-node", urls(nodes, 0)},
	} {
		b.Run(c.name, func(b *testing.B) {
			bob := dial(b, "bob-"+c.name, c.urls, func(o *client.Options) { o.ReconnectMin = time.Millisecond })
			var lat []time.Duration
			for range b.N {
				t := time.Now()
				bob.Kill()
				event(b, bob, client.EventResumed)
				lat = append(lat, time.Since(t))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkClusterCallSetup: 10 pairs of web clients (no SIP), each a
// loop of call setups, through one jsonrtcd alone (memory and nats
// stores) and a three-node cluster (replicas 3) with both ends on one
// node and on two. A setup is the caller's start, the callee's ring and
// answer, both ends established, and the caller's hang-up reaching the
// callee; its time is the caller's, from the start to established.
func BenchmarkClusterCallSetup(b *testing.B) {
	for _, c := range pairConfigs {
		for _, pairs := range []int{10, 50} {
			b.Run(fmt.Sprintf("%s/pairs=%d", c.name, pairs), func(b *testing.B) {
				nodes, from, to := c.start(b)
				var callers, callees []*client.Client
				for i := range pairs {
					callers = append(callers, dial(b, fmt.Sprintf("caller%d", i), []string{from.ws()}, nil))
					callees = append(callees, dial(b, fmt.Sprintf("callee%d", i), []string{to.ws()}, nil))
				}
				// Warm up: every directory view knows every callee (a call
				// to one not seen yet fails 480 or 404).
				for i := range pairs {
					for deadline := time.Now().Add(20 * time.Second); ; {
						_, err := setUpCall(callers[i], callees[i])
						if err == nil {
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("warm-up: %v", err)
						}
						time.Sleep(50 * time.Millisecond)
					}
				}
				measurePairs(b, c, nodes, pairs, "setup", func(i int) (time.Duration, error) {
					return setUpCall(callers[i], callees[i])
				})
			})
		}
	}
}

// measurePairs runs b.N operations (one a unit: "msg"), op(i) in a loop
// on a goroutine of each of the pairs, each returning the time it took,
// and reports them per CPU-second of the nodes, per second, and their
// p50 and p99; with a store, the session record writes each made.
func measurePairs(b *testing.B, c pairConfig, nodes []*node, pairs int, unit string, op func(i int) (time.Duration, error)) {
	per := max(b.N/pairs, 1)
	lat := make([][]time.Duration, pairs)
	cpu0, t0, w0, r0, ops0 := cpu(nodes), time.Now(), storeWrites(nodes), storeRequests(nodes), storeRequestsByOp(nodes)
	bytes0 := metricSum(nodes, "jsonrtc_store_written_bytes_total")
	b.ResetTimer()
	profiled := profile(b, nodes)
	var running sync.WaitGroup
	for i := range pairs {
		running.Go(func() {
			for range per {
				d, err := op(i)
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], d)
			}
		})
	}
	running.Wait()
	b.StopTimer()
	used, elapsed := cpu(nodes)-cpu0, time.Since(t0)
	profiled()
	all := slices.Concat(lat...)
	slices.Sort(all)
	n := len(all)
	if n == 0 {
		return
	}
	b.ReportMetric(float64(n)/used.Seconds(), unit+"s/cpu-s")
	if c.alone != "memory" {
		// Session records only: a call's own record (and its deletion
		// at its end) is not counted there.
		b.ReportMetric(float64(storeWrites(nodes)-w0)/float64(n), "writes/"+unit)
		// Every request to the records' bucket: session records (a
		// round's batch is one), call records, reads and deletions.
		b.ReportMetric(float64(storeRequests(nodes)-r0)/float64(n), "storereqs/"+unit)
		b.ReportMetric((metricSum(nodes, "jsonrtc_store_written_bytes_total")-bytes0)/float64(n), "storebytes/"+unit)
		ops := storeRequestsByOp(nodes)
		for _, k := range slices.Sorted(maps.Keys(ops)) {
			if d := ops[k] - ops0[k]; d > 0 {
				b.Logf("store requests {%s}: %.2f/%s", k, d/float64(n), unit)
			}
		}
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), unit+"s/s")
	b.ReportMetric(float64(all[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[n*99/100].Microseconds())/1000, "p99-ms")
}

// setUpCall places a call from a to b, has b ring and answer it, waits
// until both ends are established, then has a hang up and waits for b's
// end of the call. It returns the time from a's start to a's
// established, and an error rather than failing the benchmark: it runs
// on the pairs' goroutines.
func setUpCall(a, b *client.Client) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	t := time.Now()
	out, err := a.StartCall(ctx, b.Identity(), offer)
	if err != nil {
		return 0, err
	}
	var in *client.Call
	for in == nil {
		select {
		case ev := <-b.Events():
			if ev.Kind == client.EventClosed {
				return 0, fmt.Errorf("%s closed: %v", b.Identity(), ev.Err)
			}
			if ev.Kind == client.EventIncomingCall && ev.Call.Peer() == a.Identity() {
				in = ev.Call
			}
		case ev := <-a.Events():
			if _, err := callEventOf(a, out, ev, client.CallAnswered); err != nil {
				return 0, err
			}
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: no incoming call from %s", b.Identity(), a.Identity())
		}
	}
	if err := in.Ring(ctx); err != nil {
		return 0, err
	}
	if err := in.Answer(ctx, answer); err != nil {
		return 0, err
	}
	if err := awaitCall(ctx, a, out, client.CallEstablished); err != nil {
		return 0, err
	}
	d := time.Since(t)
	if err := awaitCall(ctx, b, in, client.CallEstablished); err != nil {
		return 0, err
	}
	if err := out.Hangup(ctx); err != nil {
		return 0, err
	}
	return d, awaitCall(ctx, b, in, client.CallEnded)
}

// awaitCall waits for c's call k to report want, past its other events
// (ringing, answered); an end or failure first is an error.
func awaitCall(ctx context.Context, c *client.Client, k *client.Call, want client.CallEvent) error {
	for {
		select {
		case ev := <-c.Events():
			if done, err := callEventOf(c, k, ev, want); done || err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("%s: no %v", c.Identity(), want)
		}
	}
}

// callEventOf reports whether ev is call k's want; an end of c or of k
// short of it is an error.
func callEventOf(c *client.Client, k *client.Call, ev client.Event, want client.CallEvent) (bool, error) {
	switch {
	case ev.Kind == client.EventClosed:
		return false, fmt.Errorf("%s closed: %v", c.Identity(), ev.Err)
	case ev.Kind != client.EventCall || ev.Call != k:
		return false, nil
	case ev.CallEvent == want:
		return true, nil
	case ev.CallEvent == client.CallFailed || ev.CallEvent == client.CallEnded:
		return false, fmt.Errorf("%s: call %v (%d %s) waiting for %v", c.Identity(), ev.CallEvent, ev.Code, ev.Reason, want)
	}
	return false, nil
}

// idleSessions is how many idle sessions BenchmarkClusterIdle opens on
// one node; idleSources, the loopback source addresses they come from,
// under the gateway's default http.max_conns_per_address (256) each.
const (
	idleSessions = 10000
	idleSources  = idleSessions/200 + 1
)

// idleFor is how long BenchmarkClusterIdle lets the nodes idle, from
// their last record write, before each measure: past the gateway's
// readerIdleAfter (gateway/serve.go, 3 s: a socket's reader then moves
// to a fresh goroutine) and the 10 s after which a JetStream file store
// lets go of a block's cache (nats-server's
// defaultCacheBufferExpiration), as on a long-running node; a shorter
// wait left to chance whether tens of MB of cached blocks were counted.
const idleFor = 10*time.Second + 500*time.Millisecond

// BenchmarkClusterIdle opens idleSessions idle sessions (Go clients:
// connected, their connect acknowledged, nothing else) on one jsonrtcd
// alone (memory and nats stores) and on the first node of a three-node
// cluster (replicas 3: every record is held by all three), and reports
// the resident memory and the Go heap in use they add per session, the
// store's included: of the node alone, and in the cluster both the sum
// over its three nodes and the first node's own. Each side of the
// measure is read after idleFor without record writes and two garbage
// collections, as on a long-running gateway (see test/integration
// BenchmarkIdleSessions). Run it with -benchtime 1x.
func BenchmarkClusterIdle(b *testing.B) {
	for _, c := range []struct{ name, alone string }{
		{"alone/store=memory", "memory"},
		{"alone/store=nats", "nats"},
		{"cluster", ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			var nodes []*node
			if c.alone != "" {
				nodes = []*node{single(b, c.alone, withPprof(b))}
			} else {
				nodes = newNodes(b, 3, func(int) string { return "127.0.0.1" }, func() int { return testenv.Port(b) })
				for _, n := range nodes {
					withPprof(b)(n)
				}
				startCluster(b, nodes, "")
			}
			before := quiesced(b, nodes, idleFor)
			t0 := time.Now()
			clients := make([]*client.Client, idleSessions)
			b.Cleanup(func() {
				for _, c := range clients {
					if c != nil {
						c.Close()
					}
				}
			})
			var next atomic.Int64
			var opening sync.WaitGroup
			for range 32 {
				opening.Go(func() {
					for i := int(next.Add(1)) - 1; i < idleSessions; i = int(next.Add(1)) - 1 {
						local := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%idleSources))}
						ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
						c, err := client.Dial(ctx, client.Options{URLs: []string{nodes[0].ws()}, Identity: fmt.Sprintf("idle%d", i),
							NetDial: (&net.Dialer{LocalAddr: local}).DialContext})
						cancel()
						if err != nil {
							b.Errorf("session %d: %v", i, err)
							next.Store(idleSessions)
							return
						}
						clients[i] = c
					}
				})
			}
			opening.Wait()
			if b.Failed() {
				return
			}
			opened := time.Since(t0)
			after := quiesced(b, nodes, idleFor)
			for b.Loop() {
			}
			var rss, heap int64
			for i := range nodes {
				rss += after[i].rss - before[i].rss
				heap += after[i].heap - before[i].heap
			}
			b.ReportMetric(float64(idleSessions), "sessions")
			b.ReportMetric(float64(idleSessions)/opened.Seconds(), "connects/s")
			b.ReportMetric(float64(rss)/idleSessions, "RSS-B/session")
			b.ReportMetric(float64(heap)/idleSessions, "heap-B/session")
			if len(nodes) > 1 {
				b.ReportMetric(float64(after[0].rss-before[0].rss)/idleSessions, "n1-RSS-B/session")
				b.ReportMetric(float64(after[0].heap-before[0].heap)/idleSessions, "n1-heap-B/session")
			}
		})
	}
}

// withPprof gives a node a -pprof address, for collect.
func withPprof(b testing.TB) func(*node) {
	return func(n *node) { n.pprof = fmt.Sprintf("127.0.0.1:%d", testenv.Port(b)) }
}

// footprint is a node's memory after a collection: resident, and its Go
// heap in use.
type footprint struct{ rss, heap int64 }

// quiesced waits until the nodes have made no record write for idle
// (polled each second: the store has no event for it), has each node
// collect its garbage twice, and returns their footprints.
func quiesced(b *testing.B, nodes []*node, idle time.Duration) []footprint {
	b.Helper()
	start := time.Now()
	last, w := start, storeWrites(nodes)
	for time.Since(last) < idle {
		if time.Since(start) > time.Minute {
			b.Fatalf("record writes did not stop for %v within a minute", idle)
		}
		time.Sleep(time.Second)
		if now := storeWrites(nodes); now != w {
			last, w = time.Now(), now
		}
	}
	out := make([]footprint, len(nodes))
	for i, n := range nodes {
		for range 2 {
			resp, err := http.Get("http://" + n.pprof + "/debug/pprof/heap?gc=1")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		out[i] = footprint{vmRSS(b, n), int64(metricSum([]*node{n}, "go_memstats_heap_inuse_bytes"))}
	}
	return out
}

// vmRSS returns the node's resident set size in bytes.
func vmRSS(b *testing.B, n *node) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
