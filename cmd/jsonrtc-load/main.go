// Command jsonrtc-load generates load on a jsonrtc gateway with the Go
// client SDK: it holds sessions (idle), relays instant messages between
// pairs of sessions at a target aggregate rate (relay), or places calls
// between pairs (calls), then reports throughput, latency and, given the
// gateway's pid, its memory per session.
//
// It only targets loopback addresses and stops by itself: -duration and
// -sessions are bounded.
//
//	jsonrtc-load -url ws://127.0.0.1:8080/ws/ -sessions 1000 -mode relay -rate 2000 -duration 30s -pid $(pidof jsonrtcd)
//
// With -burn N a neighbour process spins N goroutines on the same cores
// during the window, and the report gives its CPU and the load average.
// -mode flood is an attacker instead (flood.go): raw sockets flooded with
// one kind of frame (-flood) until the gateway closes each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/jsonrtc/jsonrtc/client"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	maxSessions = 50000
	maxDuration = time.Hour
)

type config struct {
	url         string
	sessions    int
	rate        float64
	duration    time.Duration
	mode        string
	pid         int
	dialRate    float64
	inflight    int
	hold        time.Duration
	prefix      string
	progress    bool
	ackDelay    time.Duration
	pingEvery   time.Duration
	dialTimeout time.Duration
	burn        int
	burner      int
	flood       string
	transport   string
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "jsonrtc-load:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("jsonrtc-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.url, "url", "ws://127.0.0.1:8080/ws/load", "gateway WebSocket `URL` (loopback only)")
	fs.IntVar(&cfg.sessions, "sessions", 100, "number of sessions to hold (even for relay and calls)")
	fs.Float64Var(&cfg.rate, "rate", 100, "target aggregate rate: messages/s (relay) or calls/s (calls)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to run once every session is up")
	fs.StringVar(&cfg.mode, "mode", "idle", "idle, relay, calls or flood")
	fs.StringVar(&cfg.transport, "transport", client.TransportWebSocket, "the sessions' transport: websocket, or longpoll (HTTP long-poll at /poll/, docs/protocol.md §1.6)")
	fs.StringVar(&cfg.flood, "flood", "valid", "flood mode: the frames it sends (valid, gaps, pings, duplicates, malformed, connects)")
	fs.IntVar(&cfg.pid, "pid", 0, "`pid` of the gateway, to report its RSS (VmRSS) and CPU time")
	fs.Float64Var(&cfg.dialRate, "dial-rate", 500, "sessions opened per second during ramp-up")
	fs.IntVar(&cfg.inflight, "inflight", 1000, "bound on requests or calls in flight; beyond it a tick counts as an overload error")
	fs.DurationVar(&cfg.hold, "hold", time.Second, "calls mode: how long each call stays up")
	fs.StringVar(&cfg.prefix, "prefix", "load", "identity prefix: <prefix>-<run>-<n>@load.test")
	fs.BoolVar(&cfg.progress, "progress", true, "show a progress line on stderr")
	fs.DurationVar(&cfg.ackDelay, "ack-delay", 0, "client AckDelay (0: the SDK default)")
	fs.DurationVar(&cfg.pingEvery, "ping", 0, "client keepalive PingInterval (0: the SDK default)")
	fs.DurationVar(&cfg.dialTimeout, "dial-timeout", 10*time.Second, "bound on one session's connect")
	fs.IntVar(&cfg.burn, "burn", 0, "run a neighbour process spinning `N` goroutines during the window (contention runs); its CPU is reported")
	fs.IntVar(&cfg.burner, "burner", 0, "internal: be the -burn neighbour, spinning `N` goroutines until stdin closes")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.burner > 0 {
		runBurner(min(cfg.burner, maxBurn), os.Stdin)
		return nil
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.mode == "flood" {
		runFlood(ctx, cfg.url, cfg.prefix, cfg.flood, cfg.duration).print(stdout, cfg.flood, cfg.duration)
		return nil
	}
	r := newRunner(cfg, stderr)
	rep, err := r.run(ctx)
	if err != nil {
		return err
	}
	rep.print(stdout)
	return nil
}

func (c *config) validate() error {
	if c.transport != client.TransportWebSocket && c.transport != client.TransportLongPoll {
		return fmt.Errorf("-transport %q: want websocket or longpoll", c.transport)
	}
	if c.transport != client.TransportWebSocket && c.mode == "flood" {
		return fmt.Errorf("-transport %s: the flood mode speaks WebSocket only", c.transport)
	}
	switch c.mode {
	case "idle", "relay", "calls":
	case "flood":
		if _, ok := floodKinds[c.flood]; !ok {
			return fmt.Errorf("-flood %q: want valid, gaps, pings, duplicates, malformed or connects", c.flood)
		}
	default:
		return fmt.Errorf("-mode %q: want idle, relay, calls or flood", c.mode)
	}
	if c.sessions < 1 || c.sessions > maxSessions {
		return fmt.Errorf("-sessions %d: want 1..%d", c.sessions, maxSessions)
	}
	if c.mode != "idle" && c.mode != "flood" && c.sessions%2 != 0 {
		return fmt.Errorf("-sessions %d: %s mode pairs sessions, want an even number", c.sessions, c.mode)
	}
	if c.duration <= 0 || c.duration > maxDuration {
		return fmt.Errorf("-duration %v: want 0..%v", c.duration, maxDuration)
	}
	if (c.mode == "relay" || c.mode == "calls") && (c.rate <= 0 || c.rate > 1e6) {
		return fmt.Errorf("-rate %v: want 0..1e6", c.rate)
	}
	if c.burn < 0 || c.burn > maxBurn {
		return fmt.Errorf("-burn %d: want 0..%d", c.burn, maxBurn)
	}
	if c.dialRate <= 0 || c.inflight < 1 {
		return errors.New("-dial-rate and -inflight must be positive")
	}
	return checkLoopback(c.url)
}

// checkLoopback refuses any target that is not this machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return fmt.Errorf("-url %q: want a ws:// URL", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: only loopback targets are allowed (127.0.0.0/8, ::1, localhost)", raw)
	}
	return nil
}

// vmRSS returns the VmRSS of pid in KiB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// loadAvg returns the 1-minute load average.
func loadAvg() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, fmt.Errorf("unexpected /proc/loadavg")
	}
	return strconv.ParseFloat(f[0], 64)
}

// processCPU returns the user and system CPU time pid has used.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it (utime and stime are the 14th and 15th of stat(5)).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}

// counters are shared by every session.
type counters struct {
	framesIn, framesOut atomic.Int64
	held                atomic.Int64 // sessions up right now
	ok                  atomic.Int64 // messages answered or calls set up
	errDial             atomic.Int64
	errRequest          atomic.Int64
	errOverload         atomic.Int64
	reconnects          atomic.Int64
	sessionsLost        atomic.Int64
	closedEarly         atomic.Int64
	errFrames           atomic.Int64
}

func (c *counters) errors() int64 {
	return c.errDial.Load() + c.errRequest.Load() + c.errOverload.Load() + c.sessionsLost.Load() + c.closedEarly.Load() + c.errFrames.Load()
}

// latencies collects samples up to a bound, then counts the rest.
type latencies struct {
	mu      sync.Mutex
	samples []time.Duration
	dropped int64
}

const maxSamples = 4 << 20

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	if len(l.samples) < maxSamples {
		l.samples = append(l.samples, d)
	} else {
		l.dropped++
	}
	l.mu.Unlock()
}

func (l *latencies) quantiles() (n int, p50, p90, p99, max time.Duration) {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	l.mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0, 0, 0
	}
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return len(s), q(0.50), q(0.90), q(0.99), s[len(s)-1]
}
