package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// The test binary stands in for jsonrtc-load when it starts itself as
// the -burn neighbour.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-burner" {
		if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The neighbour burns CPU in a process of its own, and exits when told.
func TestBurner(t *testing.T) {
	b, err := startBurner(1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.cpu()
	for start := time.Now(); err == nil && d < 20*time.Millisecond && time.Since(start) < 10*time.Second; {
		d, err = b.cpu()
	}
	if err != nil || d < 20*time.Millisecond {
		t.Fatalf("neighbour CPU %v, %v", d, err)
	}
	b.stop()
	if !b.cmd.ProcessState.Exited() || b.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("neighbour ended with %v", b.cmd.ProcessState)
	}
}

func TestCheckLoopback(t *testing.T) {
	for u, ok := range map[string]bool{
		"ws://127.0.0.1:8080/ws/": true,
		"ws://127.9.9.9/ws/":      true,
		"ws://[::1]:8080/ws/":     true,
		"ws://localhost/ws/":      true,
		"ws://10.0.0.1/ws/":       false,
		"ws://example.com/ws/":    false,
		"ftp://127.0.0.1/":        false,
		"ws://0.0.0.0/ws/":        false,
	} {
		if err := checkLoopback(u); (err == nil) != ok {
			t.Errorf("%s: err = %v, want ok=%v", u, err, ok)
		}
	}
}

func TestValidate(t *testing.T) {
	good := config{url: "ws://127.0.0.1/ws/", sessions: 10, rate: 5, duration: time.Second, mode: "relay", dialRate: 1, inflight: 1, transport: "websocket"}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	poll := good
	poll.transport = "longpoll"
	if err := poll.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*config){
		"odd pairs":      func(c *config) { c.sessions = 3 },
		"too many":       func(c *config) { c.sessions = maxSessions + 1 },
		"unbounded time": func(c *config) { c.duration = 2 * maxDuration },
		"no rate":        func(c *config) { c.rate = 0 },
		"mode":           func(c *config) { c.mode = "storm" },
		"flood kind":     func(c *config) { c.mode, c.flood = "flood", "everything" },
		"burn":           func(c *config) { c.burn = maxBurn + 1 },
		"transport":      func(c *config) { c.transport = "carrier-pigeon" },
		"flood poll":     func(c *config) { c.mode, c.flood, c.transport = "flood", "valid", "longpoll" },
	} {
		c := good
		mod(&c)
		if c.validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The flood mode floods raw sockets until the gateway closes each
// (docs/security.md runs it against jsonrtcd); here, its configuration
// and its count of refused handshakes.
func TestFloodConfigAndRefusals(t *testing.T) {
	c := config{url: "ws://127.0.0.1/ws/", sessions: 1, duration: time.Second, mode: "flood", flood: "pings", dialRate: 1, inflight: 1, transport: "websocket"}
	if err := c.validate(); err != nil {
		t.Fatalf("flood config refused: %v", err)
	}
	// Nothing listens there: every handshake is refused and counted.
	rep := runFlood(context.Background(), "ws://127.0.0.1:1/ws/load", "t", "pings", 100*time.Millisecond)
	if rep.sockets != 0 || rep.refused == 0 {
		t.Fatalf("flood with no gateway: %+v", rep)
	}
}

func TestQuantiles(t *testing.T) {
	var l latencies
	for i := 1; i <= 100; i++ {
		l.add(time.Duration(i) * time.Millisecond)
	}
	n, p50, p90, p99, max := l.quantiles()
	if n != 100 || p50 != 51*time.Millisecond || p90 != 91*time.Millisecond || p99 != 100*time.Millisecond || max != 100*time.Millisecond {
		t.Fatalf("n %d p50 %v p90 %v p99 %v max %v", n, p50, p90, p99, max)
	}
}

func TestProcessCPU(t *testing.T) {
	d, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged this process at least one tick.
	for start := time.Now(); d < 10*time.Millisecond && time.Since(start) < 10*time.Second; {
		d, _ = processCPU(os.Getpid())
	}
	if d < 10*time.Millisecond {
		t.Fatalf("CPU time %v after spinning", d)
	}
}

// With no gateway listening, nothing connects: the run fails and names
// the first dial error's cause instead of printing a report of zeros.
func TestNoGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	err = run([]string{"-url", "ws://" + addr + "/ws/load", "-sessions", "2", "-duration", "1s", "-progress=false", "-dial-timeout", "2s"}, &stdout, &stderr)
	if err == nil {
		t.Fatalf("no error; stdout:\n%s", stdout.String())
	}
	if !strings.Contains(err.Error(), "no session connected") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("error %q does not name the cause", err)
	}
	if stdout.Len() != 0 {
		t.Fatalf("a report was printed:\n%s", stdout.String())
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-h"}, &stdout, &stderr); err != nil {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(stderr.String(), "-sessions") {
		t.Fatalf("no usage: %q", stderr.String())
	}
}
