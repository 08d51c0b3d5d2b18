package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
)

// TestChaos: 200 sessions exchange 200,000 messages through the gateway
// while sockets are killed at random every few hundred milliseconds. Every
// message must arrive exactly once and in order, and every sender must get
// its delivery report.
func TestChaos(t *testing.T) {
	perSession := 1000
	if testing.Short() {
		perSession = 50
	} else if raceEnabled {
		// The race detector slows this tenfold; scripts/test also runs the
		// full count without it.
		perSession = 100
	}
	chaos(t, 200, perSession, nil)
}

// TestChaosMixed is TestChaos with every other session on long-poll
// (docs/protocol.md §1.6), at a fifth of its sessions: each long-poll
// session holds a GET and makes a POST per frame, which the race
// detector and a shared machine make slow at full scale.
func TestChaosMixed(t *testing.T) {
	perSession := 500
	if testing.Short() || raceEnabled {
		perSession = 50
	}
	chaos(t, 40, perSession, func(i int) []string {
		if i%2 == 1 {
			return []string{client.TransportLongPoll}
		}
		return nil
	})
}

// TestChaosLongPoll is TestChaosMixed with every session on long-poll:
// each resume opens a new long-poll connection, and a GET or POST cut by
// a kill is one the client resends or the gateway retains.
func TestChaosLongPoll(t *testing.T) {
	perSession := 500
	if testing.Short() || raceEnabled {
		perSession = 50
	}
	chaos(t, 40, perSession, func(int) []string { return []string{client.TransportLongPoll} })
}

// chaos runs the chaos test with sessions sessions sending perSession
// messages each; transports, when set, picks each session's transports.
func chaos(t *testing.T, sessions, perSession int, transports func(i int) []string) {
	g, url := startGateway(t, func(c *gateway.Config) {
		c.Session.ResumeTimeout = gateway.Duration(30 * time.Second)
	})
	clients := make([]*client.Client, sessions)
	for i := range clients {
		clients[i] = connect(t, url, "u"+strconv.Itoa(i)+"@example.com", func(o *client.Options) {
			o.AutoAcceptMessages = true
			o.EventBuffer = 4096
			if transports != nil {
				o.Transports = transports(i)
			}
		})
	}

	// Receivers: per sender, the next expected number.
	type counts struct{ got, dup, outOfOrder int64 }
	var total atomic.Int64
	totalWant := int64(sessions * perSession)
	allIn := make(chan struct{})
	res := make([]counts, sessions)
	var recv sync.WaitGroup
	for i, c := range clients {
		recv.Add(1)
		go func() {
			defer recv.Done()
			expectNext := map[string]int{}
			for ev := range c.Events() {
				if ev.Kind != client.EventMessage {
					continue
				}
				from, n, ok := strings.Cut(ev.Message.Body, ":")
				if !ok {
					continue
				}
				k, _ := strconv.Atoi(n)
				switch want := expectNext[from]; {
				case k == want:
					expectNext[from] = k + 1
					res[i].got++
					if total.Add(1) == totalWant {
						close(allIn)
					}
				case k < want:
					res[i].dup++
				default:
					res[i].outOfOrder++
					expectNext[from] = k + 1
				}
			}
		}()
	}

	// Killer: every 100-400 ms, drop the sockets of a few random sessions.
	stop := make(chan struct{})
	var kills atomic.Int64
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(100+rng.IntN(300)) * time.Millisecond):
			}
			for j := 0; j < 1+rng.IntN(10); j++ {
				clients[rng.IntN(sessions)].Kill()
				kills.Add(1)
			}
		}
	}()

	// Senders: session i sends to i+1 (mod n), one message at a time, in
	// order; each waits for its delivery report.
	var failures atomic.Int64
	var firstErr atomic.Value
	var send sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		send.Add(1)
		go func() {
			defer send.Done()
			to := "u" + strconv.Itoa((i+1)%sessions) + "@example.com"
			me := "u" + strconv.Itoa(i)
			for k := 0; k < perSession; k++ {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				code, err := c.Send(ctx, to, "text/plain", me+":"+strconv.Itoa(k))
				cancel()
				if err != nil || code != 200 {
					failures.Add(1)
					// c.Err says why a client that stopped on its own did.
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s message %d: code %d err %v (client: %v)", me, k, code, err, c.Err()))
					return
				}
			}
		}()
	}
	send.Wait()
	want := totalWant
	close(stop)
	<-killerDone
	elapsed := time.Since(start)
	// Every report came back, so every message was delivered; wait for
	// the receivers to have counted them.
	if failures.Load() == 0 {
		select {
		case <-allIn:
		case <-time.After(30 * time.Second):
			t.Fatalf("delivered %d of %d", total.Load(), want)
		}
	}
	for _, c := range clients {
		c.Close()
	}
	recv.Wait()
	var dup, ooo int64
	for _, r := range res {
		dup += r.dup
		ooo += r.outOfOrder
	}
	t.Logf("%d messages in %v (%.0f/s) with %d socket kills: delivered %d, duplicated %d, out of order %d, send failures %d",
		want, elapsed.Round(time.Millisecond), float64(want)/elapsed.Seconds(), kills.Load(), total.Load(), dup, ooo, failures.Load())
	// Refused as stale: connects the clients gave up on, read late
	// (docs/protocol.md §4.4 "Stale connects").
	t.Logf("resumes by outcome: %s", resumeOutcomes(scrape(g)))
	if failures.Load() != 0 {
		t.Fatalf("send failures: %d, first: %v", failures.Load(), firstErr.Load())
	}
	if total.Load() != want || dup != 0 || ooo != 0 {
		t.Fatalf("delivered %d of %d, %d duplicated, %d out of order", total.Load(), want, dup, ooo)
	}
	if s := g.Stats(); s.PendingMessages != 0 {
		t.Fatalf("gateway still has %d pending messages", s.PendingMessages)
	}
}

// resumeOutcomes is jsonrtc_resumes_total's samples in metrics text m.
func resumeOutcomes(m string) string {
	var out []string
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, `jsonrtc_resumes_total{outcome="`); ok {
			out = append(out, strings.Replace(v, `"} `, " ", 1))
		}
	}
	return strings.Join(out, ", ")
}
