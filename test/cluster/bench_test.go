package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/internal/testenv"
)

// single starts one jsonrtcd alone with the given store backend.
func single(b testing.TB, backend string) *node {
	b.Helper()
	dir := b.TempDir()
	n := &node{name: "alone", dir: filepath.Join(dir, "data"), config: filepath.Join(dir, "c.yaml"), log: filepath.Join(dir, "log")}
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
	var total float64
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.metrics + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(body)) {
			if rest, ok := strings.CutPrefix(line, "jsonrtc_store_writes_total{"); ok {
				v, _ := strconv.ParseFloat(strings.TrimSpace(rest[strings.IndexByte(rest, '}')+1:]), 64)
				total += v
			}
		}
	}
	return total
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
// relay benchmark writes a CPU profile of each (NAME-NODE.pprof) of the
// first profileFor of its measured window (give it -benchtime enough to
// last that long), to see where a relayed message's CPU goes.
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

// BenchmarkClusterRelay: 20 pairs relay messages (each a round trip:
// the message and its delivery report) through one jsonrtcd alone
// (memory and nats stores) and through a three-node cluster (replicas
// 3) with both ends on one node and on two.
func BenchmarkClusterRelay(b *testing.B) {
	for _, c := range []struct {
		name      string
		alone     string // a backend alone; "": the cluster
		otherNode bool
	}{
		{"alone/store=memory", "memory", false},
		{"alone/store=nats", "nats", false},
		{"cluster/same-node", "", false},
		{"cluster/two-nodes", "", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var nodes []*node
			if c.alone != "" {
				nodes = []*node{single(b, c.alone)}
			} else {
				nodes = newCluster(b)
			}
			from, to := nodes[0], nodes[0]
			if c.otherNode {
				to = nodes[1]
			}
			const pairs = 20
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
			per := max(b.N/pairs, 1)
			lat := make([][]time.Duration, pairs)
			cpu0, t0, w0 := cpu(nodes), time.Now(), storeWrites(nodes)
			b.ResetTimer()
			profiled := profile(b, nodes)
			var sending sync.WaitGroup
			for i, s := range senders {
				sending.Go(func() {
					for range per {
						t := time.Now()
						if code, err := s.Send(context.Background(), fmt.Sprintf("b%d", i), "text/plain", "hello"); err != nil || code != 200 {
							b.Errorf("send: %d %v", code, err)
							return
						}
						lat[i] = append(lat[i], time.Since(t))
					}
				})
			}
			sending.Wait()
			b.StopTimer()
			used, elapsed := cpu(nodes)-cpu0, time.Since(t0)
			profiled()
			all := slices.Concat(lat...)
			slices.Sort(all)
			n := len(all)
			if n == 0 {
				return
			}
			b.ReportMetric(float64(n)/used.Seconds(), "msgs/cpu-s")
			if c.alone != "memory" {
				b.ReportMetric(float64(storeWrites(nodes)-w0)/float64(n), "writes/msg")
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(all[n/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(all[n*99/100].Microseconds())/1000, "p99-ms")
		})
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
