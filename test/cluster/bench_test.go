package cluster

import (
	"context"
	"fmt"
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
			for i := range pairs {
				senders = append(senders, dial(b, fmt.Sprintf("a%d", i), []string{from.ws()}, nil))
				dial(b, fmt.Sprintf("b%d", i), []string{to.ws()}, func(o *client.Options) { o.AutoAcceptMessages = true })
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
			cpu0, t0 := cpu(nodes), time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for i, s := range senders {
				wg.Go(func() {
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
			wg.Wait()
			b.StopTimer()
			used, elapsed := cpu(nodes)-cpu0, time.Since(t0)
			all := slices.Concat(lat...)
			slices.Sort(all)
			n := len(all)
			if n == 0 {
				return
			}
			b.ReportMetric(float64(n)/used.Seconds(), "msgs/cpu-s")
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
