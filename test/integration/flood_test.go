package integration

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/internal/flood"
	"github.com/jsonrtc/jsonrtc/internal/logtest"
	"github.com/jsonrtc/jsonrtc/limits"
)

// floodFor is how long each mode floods.
const floodFor = 3 * time.Second

// lifecycle lines are one per session or socket, bounded by the
// handshake rate, not by the frames a socket sends.
var lifecycle = map[string]bool{
	"session started": true, "session ended": true, "socket lost; waiting for resume": true, "session resumed": true,
}

// floodMode is one way to flood: frame is what the flooder sends, over
// and over, on each socket.
type floodMode struct {
	name string
	// session: the flooder connects first, as a new identity per socket.
	session bool
	frame   func(sid string, i int) string
}

func sendFrame(sid string, seq int) string {
	return `{"control":{"type":"request","package_type":"messaging","session_id":"` + sid + `","sequence":` + strconv.Itoa(seq) +
		`},"header":{"action":"send","target":"nobody@example.com"},"payload":{"body":"x"}}`
}

func floodModes(aliceSID string) []floodMode {
	return []floodMode{
		{name: "valid frames", session: true, frame: func(sid string, i int) string { return sendFrame(sid, i+2) }},
		{name: "sequence gaps", session: true, frame: func(sid string, i int) string { return sendFrame(sid, 2*i+3) }},
		{name: "text pings", session: true, frame: func(string, int) string { return "ping" }},
		{name: "acks", session: true, frame: func(sid string, _ int) string {
			return `{"control":{"type":"acknowledgement","package_type":"register","session_id":"` + sid + `","ack_sequence":1}}`
		}},
		{name: "duplicates", session: true, frame: func(sid string, _ int) string { return sendFrame(sid, 1) }},
		{name: "malformed frames", session: true, frame: func(string, int) string { return `{"control":[` }},
		// Mallory holds the one session her identity may have: each
		// connect is refused before a session exists.
		{name: "pre-session connects", frame: func(string, int) string {
			return `{"control":{"type":"request","package_type":"register","sequence":1},"header":{"action":"connect","initiator":"mallory@example.com"}}`
		}},
		{name: "connects with another's session id", frame: func(string, int) string {
			return `{"control":{"type":"request","package_type":"register","session_id":"` + aliceSID +
				`","sequence":1},"header":{"action":"connect","initiator":"mallory@example.com"}}`
		}},
	}
}

// floodResult is what one mode did.
type floodResult struct {
	sockets  int
	answered int64
	closes   map[websocket.StatusCode]int
	// most is the most answers the sockets' budgets allow in their
	// lifetimes.
	most int
}

// fate lists how the sockets ended: "1008 ×36, 1013 ×13, no close frame
// ×1" (the last socket, still flooding when the time was up, is cut by
// the flooder).
func (r floodResult) fate() string {
	codes := slices.Sorted(maps.Keys(r.closes))
	var out []string
	for _, c := range codes {
		name := strconv.Itoa(int(c))
		if c < 0 {
			name = "no close frame"
		}
		out = append(out, fmt.Sprintf("%s ×%d", name, r.closes[c]))
	}
	return strings.Join(out, ", ")
}

// flooder opens raw sockets one after another, as fast as the handshake
// limit lets it, for d, and floods each with m's frames as fast as the
// socket takes them.
func flooder(t *testing.T, url string, m floodMode, d time.Duration) floodResult {
	res := floodResult{closes: map[websocket.StatusCode]int{}}
	end := time.Now().Add(d)
	for n := 0; time.Now().Before(end); n++ {
		ctx, cancel := context.WithDeadline(context.Background(), end)
		connect := ""
		if m.session {
			connect = flood.Connect("mallory-" + strconv.Itoa(n) + "@example.com")
		}
		t0 := time.Now()
		r, err := flood.Socket(ctx, url, connect, m.frame)
		if err != nil {
			// A refused handshake (429: 10 a second from one address).
			// Retrying at once would make this a handshake flood, which
			// is not what is measured here.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
			cancel()
			continue
		}
		cancel()
		res.sockets++
		res.answered += r.Answered
		res.closes[r.Code]++
		// The connect response, then the budget (default profile: 50/s,
		// burst 100) over the socket's life.
		res.most += 1 + mostAnswers(100, 50, time.Since(t0))
	}
	return res
}

// mostAnswers is what a socket budget of rate per second and burst
// answers at most in elapsed: the burst, what refilled, and one denial a
// second.
func mostAnswers(burst, rate int, elapsed time.Duration) int {
	secs := elapsed.Seconds()
	return burst + int(float64(rate)*secs) + int(secs) + 2
}

// probe sends messages from a to b every interval until stop closes and
// returns their round trips; every one must arrive.
func probe(t *testing.T, a *client.Client, b string, n int, interval time.Duration, stop <-chan struct{}) []time.Duration {
	var rtts []time.Duration
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; n <= 0 || i < n; i++ {
		t0 := time.Now()
		code, err := a.Send(ctx(t), b, "text/plain", "probe "+strconv.Itoa(i))
		if err != nil || code != 200 {
			t.Errorf("probe %d: %d, %v", i, code, err)
			return rtts
		}
		rtts = append(rtts, time.Since(t0))
		select {
		case <-stop:
			return rtts
		case <-tick.C:
		}
	}
	return rtts
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[(len(d)*99)/100]
}

// TestFlood runs one flooder per mode against a gateway for floodFor,
// while a well-behaved client messages another, and checks what the
// flood cost: the gateway's log (a few lines per cause), the frames
// answered to the flooder (within its budget), its fate, and the other
// client's messages (all delivered). The round trips are reported, not
// asserted: docs/security.md has the figures.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods for 3 s per mode")
	}
	var table []string
	for _, name := range []string{"valid frames", "sequence gaps", "text pings", "acks", "duplicates", "malformed frames",
		"pre-session connects", "connects with another's session id"} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			lc := logtest.NewCounter()
			_, url := startGatewayOpts(t, func(c *gateway.Config) {
				// The probe's messages are not what is measured: the
				// flooders' sends must not use up the application's
				// message budget, which the probe shares.
				unlimited := limits.Rate{Rate: -1}
				c.Limits = limits.Config{Profiles: map[string]limits.Profile{"default": {
					Identity:    limits.Quota{Sessions: 1, Messages: unlimited},
					Application: limits.Quota{Messages: unlimited},
				}}}
			}, gateway.Options{Logger: slog.New(lc)})
			alice := connect(t, url, "alice@example.com", nil)
			connect(t, url, "bob@example.com", func(o *client.Options) { o.AutoAcceptMessages = true })
			connect(t, url, "mallory@example.com", nil) // her one session
			var m floodMode
			for _, fm := range floodModes(alice.SessionID()) {
				if fm.name == name {
					m = fm
				}
			}
			before := probe(t, alice, "bob@example.com", 50, 10*time.Millisecond, nil)
			logBefore := lc.Snapshot()

			stop := make(chan struct{})
			var res floodResult
			done := make(chan struct{})
			go func() {
				defer close(done)
				res = flooder(t, url, m, floodFor)
			}()
			t0 := time.Now()
			var during []time.Duration
			probed := make(chan struct{})
			go func() {
				defer close(probed)
				during = probe(t, alice, "bob@example.com", 0, 30*time.Millisecond, stop)
			}()
			<-done
			close(stop)
			<-probed
			elapsed := time.Since(t0)

			logAfter := lc.Snapshot()
			lines, lifeLines := 0, 0
			for msg, n := range logAfter {
				n -= logBefore[msg]
				if lifecycle[msg] {
					lifeLines += n
					continue
				}
				lines += n
				// 5 a cause per 10 s window, and a summary.
				if n > 6 {
					t.Errorf("%q logged %d times in %v", msg, n, elapsed.Round(time.Millisecond))
				}
			}
			if lifeLines > 3*res.sockets {
				t.Errorf("%d lifecycle lines for %d sockets", lifeLines, res.sockets)
			}
			if res.answered > int64(res.most) {
				t.Errorf("flooder answered %d times, more than its budget's %d", res.answered, res.most)
			}
			fate := res.fate()
			t.Logf("%s: %d sockets, %d log lines (+%d lifecycle), %d frames answered, closes %s; alice->bob p99 before %v (%d), during %v (%d)",
				name, res.sockets, lines, lifeLines, res.answered, fate, p99(before), len(before), p99(during), len(during))
			table = append(table, fmt.Sprintf("| %s | %d | %d | %s | %v | %v |", name, lines, res.answered, fate,
				p99(before).Round(10*time.Microsecond), p99(during).Round(10*time.Microsecond)))
		})
	}
	t.Logf("| mode | log lines | frames answered | sockets closed | p99 before | p99 during |\n%s", strings.Join(table, "\n"))
}
