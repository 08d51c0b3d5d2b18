package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

const loadSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=sendrecv\r\n"

// loadSession is one session and the goroutine draining its events.
type loadSession struct {
	c        *client.Client
	identity string
	done     chan struct{} // closed when the drainer exits
	mu       sync.Mutex
	waiters  map[string]chan error // call id -> answered (nil) or failed
}

func (s *loadSession) waiter(id string) chan error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[id]
	if !ok {
		ch = make(chan error, 1)
		s.waiters[id] = ch
	}
	return ch
}

func (s *loadSession) forget(id string) {
	s.mu.Lock()
	delete(s.waiters, id)
	s.mu.Unlock()
}

type runner struct {
	cfg          config
	out          io.Writer
	cnt          counters
	lat          latencies
	runID        string
	sessions     []*loadSession
	firstDialErr atomic.Pointer[error] // why the first session that failed to connect failed
	tasks        sync.WaitGroup        // requests, calls and answers in flight
}

func newRunner(cfg config, progress io.Writer) *runner {
	b := make([]byte, 4)
	rand.Read(b)
	return &runner{cfg: cfg, out: progress, runID: hex.EncodeToString(b)}
}

type report struct {
	cfg                      config
	wanted, held, maxHeld    int64
	ramp, window             time.Duration
	framesIn, framesOut      int64
	ok                       int64
	n                        int
	p50, p90, p99, max       time.Duration
	dropped                  int64
	cnt                      *counters
	rssBase, rssHeld, rssEnd int64
	rssErr                   error
	cpu                      time.Duration // the gateway's, over the window
	burnCPU                  time.Duration // the -burn neighbour's, over the window
	burnPid                  int
	selfCPU                  time.Duration // this process's, over the window
	load0, load1             float64       // 1-minute load average at the start and end of the window
	firstDialErr             error
}

func (r *runner) run(ctx context.Context) (*report, error) {
	rep := &report{cfg: r.cfg, wanted: int64(r.cfg.sessions), cnt: &r.cnt}
	if r.cfg.pid != 0 {
		rep.rssBase, rep.rssErr = vmRSS(r.cfg.pid)
		if rep.rssErr != nil {
			return nil, rep.rssErr
		}
	}
	progCtx, stopProg := context.WithCancel(context.Background())
	progDone := make(chan struct{})
	phase := make(chan string, 4)
	go r.progress(progCtx, progDone, phase)

	start := time.Now()
	phase <- "ramp"
	r.rampUp(ctx)
	rep.ramp = time.Since(start)
	rep.maxHeld = r.cnt.held.Load()
	if p := r.firstDialErr.Load(); p != nil {
		rep.firstDialErr = *p
	}
	if rep.maxHeld == 0 && ctx.Err() == nil {
		// Nothing to load: say why instead of a report of zeros.
		stopProg()
		<-progDone
		if rep.firstDialErr != nil {
			return nil, fmt.Errorf("no session connected to %s (%d dial errors), the first: %w", r.cfg.url, r.cnt.errDial.Load(), rep.firstDialErr)
		}
		return nil, fmt.Errorf("no session connected to %s", r.cfg.url)
	}
	if r.cfg.pid != 0 {
		rep.rssHeld, _ = vmRSS(r.cfg.pid)
	}

	phase <- r.cfg.mode
	var nb *burner
	if r.cfg.burn > 0 {
		var err error
		if nb, err = startBurner(r.cfg.burn); err != nil {
			stopProg()
			<-progDone
			r.closeAll()
			return nil, err
		}
		rep.burnPid = nb.pid()
	}
	rep.load0, _ = loadAvg()
	var cpu0, burn0 time.Duration
	self0, _ := processCPU(os.Getpid())
	if r.cfg.pid != 0 {
		cpu0, _ = processCPU(r.cfg.pid)
	}
	if nb != nil {
		burn0, _ = nb.cpu()
	}
	in0, out0 := r.cnt.framesIn.Load(), r.cnt.framesOut.Load()
	ws := time.Now()
	wctx, cancel := context.WithTimeout(ctx, r.cfg.duration)
	switch r.cfg.mode {
	case "idle":
		<-wctx.Done()
	case "relay", "calls":
		r.pace(wctx)
	}
	cancel()
	r.tasks.Wait()
	rep.window = time.Since(ws)
	rep.framesIn, rep.framesOut = r.cnt.framesIn.Load()-in0, r.cnt.framesOut.Load()-out0
	rep.held = r.cnt.held.Load()
	rep.load1, _ = loadAvg()
	if c, err := processCPU(os.Getpid()); err == nil {
		rep.selfCPU = c - self0
	}
	if nb != nil {
		if c, err := nb.cpu(); err == nil {
			rep.burnCPU = c - burn0
		}
		nb.stop()
	}
	if r.cfg.pid != 0 {
		rep.rssEnd, _ = vmRSS(r.cfg.pid)
		if cpu1, err := processCPU(r.cfg.pid); err == nil && cpu0 > 0 {
			rep.cpu = cpu1 - cpu0
		}
	}
	phase <- "closing"
	r.closeAll()
	stopProg()
	<-progDone
	rep.ok = r.cnt.ok.Load()
	rep.n, rep.p50, rep.p90, rep.p99, rep.max = r.lat.quantiles()
	rep.dropped = r.lat.dropped
	return rep, nil
}

// rampUp opens the sessions at -dial-rate, with a bounded number of
// handshakes at once.
func (r *runner) rampUp(ctx context.Context) {
	r.sessions = make([]*loadSession, r.cfg.sessions)
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / r.cfg.dialRate)
	next := time.Now()
	for i := range r.sessions {
		if ctx.Err() != nil {
			break
		}
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		next = next.Add(interval)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.sessions[i] = r.open(ctx, i)
		}()
	}
	wg.Wait()
}

func (r *runner) open(ctx context.Context, i int) *loadSession {
	s := &loadSession{
		identity: fmt.Sprintf("%s-%s-%d@load.test", r.cfg.prefix, r.runID, i),
		done:     make(chan struct{}),
		waiters:  make(map[string]chan error),
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.dialTimeout)
	defer cancel()
	c, err := client.Dial(dctx, client.Options{
		URL:                r.cfg.url,
		Transports:         []string{r.cfg.transport},
		Identity:           s.identity,
		AutoAcceptMessages: true,
		EventBuffer:        64, // allocated up front: keep sessions cheap
		AckDelay:           r.cfg.ackDelay,
		PingInterval:       r.cfg.pingEvery,
		OnFrame: func(out bool, _ []byte) {
			if out {
				r.cnt.framesOut.Add(1)
			} else {
				r.cnt.framesIn.Add(1)
			}
		},
	})
	if err != nil {
		r.cnt.errDial.Add(1)
		r.firstDialErr.CompareAndSwap(nil, &err)
		return nil
	}
	s.c = c
	r.cnt.held.Add(1)
	go r.drain(s)
	return s
}

// drain reads a session's events; it answers incoming calls in calls
// mode and reports answers to the callers waiting for them.
func (r *runner) drain(s *loadSession) {
	defer close(s.done)
	up := true
	for ev := range s.c.Events() {
		switch ev.Kind {
		case client.EventReconnecting:
			r.cnt.reconnects.Add(1)
			if up {
				r.cnt.held.Add(-1)
				up = false
			}
		case client.EventResumed, client.EventSessionLost:
			if ev.Kind == client.EventSessionLost {
				r.cnt.sessionsLost.Add(1)
			}
			if !up {
				r.cnt.held.Add(1)
				up = true
			}
		case client.EventClosed:
			if ev.Err != nil {
				r.cnt.closedEarly.Add(1)
			}
		case client.EventError:
			r.cnt.errFrames.Add(1)
		case client.EventIncomingCall:
			k := ev.Call
			r.tasks.Add(1)
			go func() {
				defer r.tasks.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := k.Ring(ctx); err != nil {
					r.cnt.errRequest.Add(1)
					return
				}
				if err := k.Answer(ctx, loadSDP); err != nil {
					r.cnt.errRequest.Add(1)
				}
			}()
		case client.EventCall:
			switch ev.CallEvent {
			case client.CallAnswered:
				if !ev.Call.Incoming() {
					s.waiter(ev.Call.ID()) <- nil
				}
			case client.CallFailed:
				if !ev.Call.Incoming() {
					s.waiter(ev.Call.ID()) <- fmt.Errorf("call failed: %d %s", ev.Code, ev.Reason)
				}
			}
		}
	}
	if up {
		r.cnt.held.Add(-1)
	}
}

// pace issues requests or calls at -rate across the pairs until ctx ends.
func (r *runner) pace(ctx context.Context) {
	pairs := len(r.sessions) / 2
	sem := make(chan struct{}, r.cfg.inflight)
	start := time.Now()
	var issued int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int64(r.cfg.rate*time.Since(start).Seconds()) - issued
		for ; due > 0; due-- {
			p := int(issued % int64(pairs))
			from, to := r.sessions[2*p], r.sessions[2*p+1]
			if (issued/int64(pairs))%2 == 1 {
				from, to = to, from
			}
			issued++
			if from == nil || to == nil {
				continue // its failed dial is counted already
			}
			select {
			case sem <- struct{}{}:
			default:
				r.cnt.errOverload.Add(1)
				continue
			}
			r.tasks.Add(1)
			go func() {
				defer r.tasks.Done()
				defer func() { <-sem }()
				if r.cfg.mode == "relay" {
					r.message(ctx, from, to)
				} else {
					r.call(ctx, from, to)
				}
			}()
		}
	}
}

func (r *runner) message(ctx context.Context, from, to *loadSession) {
	// Requests in flight at the end of the window may finish.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	code, err := from.c.Send(rctx, to.identity, "text/plain", "load")
	if err != nil || code >= 300 {
		r.cnt.errRequest.Add(1)
		return
	}
	r.lat.add(time.Since(t0))
	r.cnt.ok.Add(1)
}

// call places a call, measures the time to the answer, holds it, hangs up.
func (r *runner) call(ctx context.Context, from, to *loadSession) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second+r.cfg.hold)
	defer cancel()
	t0 := time.Now()
	k, err := from.c.StartCall(rctx, to.identity, loadSDP)
	if err != nil {
		r.cnt.errRequest.Add(1)
		return
	}
	defer from.forget(k.ID())
	select {
	case err = <-from.waiter(k.ID()):
	case <-rctx.Done():
		err = rctx.Err()
	}
	if err != nil {
		r.cnt.errRequest.Add(1)
		k.Hangup(rctx)
		return
	}
	r.lat.add(time.Since(t0))
	r.cnt.ok.Add(1)
	select {
	case <-time.After(r.cfg.hold):
	case <-ctx.Done():
	}
	if err := k.Hangup(rctx); err != nil {
		r.cnt.errRequest.Add(1)
	}
}

// closeAll logs every session out, 64 at a time, and waits for the
// drainers.
func (r *runner) closeAll() {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, s := range r.sessions {
		if s == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.c.Close()
			<-s.done
		}()
	}
	wg.Wait()
	r.tasks.Wait()
}

// progress rewrites one stderr line each second until ctx ends.
func (r *runner) progress(ctx context.Context, done chan<- struct{}, phase <-chan string) {
	defer close(done)
	if !r.cfg.progress {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	name := ""
	var lastIn, lastOut, lastOK int64
	last := start
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(r.out)
			return
		case name = <-phase:
			continue
		case now := <-t.C:
			in, out, ok := r.cnt.framesIn.Load(), r.cnt.framesOut.Load(), r.cnt.ok.Load()
			dt := now.Sub(last).Seconds()
			fmt.Fprintf(r.out, "\r[%5.0fs %-7s] sessions %d/%d  frames/s in %.0f out %.0f  ok/s %.0f  errors %d   ",
				now.Sub(start).Seconds(), name, r.cnt.held.Load(), r.cfg.sessions,
				float64(in-lastIn)/dt, float64(out-lastOut)/dt, float64(ok-lastOK)/dt, r.cnt.errors())
			lastIn, lastOut, lastOK, last = in, out, ok, now
		}
	}
}

func (rep *report) print(w io.Writer) {
	secs := rep.window.Seconds()
	fmt.Fprintf(w, "mode %s, transport %s, target %s\n", rep.cfg.mode, rep.cfg.transport, rep.cfg.url)
	fmt.Fprintf(w, "sessions held: %d of %d (at end of ramp %d, ramp %.1fs)\n", rep.held, rep.wanted, rep.maxHeld, rep.ramp.Seconds())
	fmt.Fprintf(w, "window: %.1fs\n", secs)
	fmt.Fprintf(w, "frames/s: %.0f (in %.0f, out %.0f)\n", float64(rep.framesIn+rep.framesOut)/secs, float64(rep.framesIn)/secs, float64(rep.framesOut)/secs)
	if rep.cfg.mode != "idle" {
		what := "messages"
		if rep.cfg.mode == "calls" {
			what = "calls set up"
		}
		fmt.Fprintf(w, "%s: %d (%.0f/s, target %.0f/s)\n", what, rep.ok, float64(rep.ok)/secs, rep.cfg.rate)
		fmt.Fprintf(w, "latency (%d samples): p50 %v  p90 %v  p99 %v  max %v\n", rep.n,
			rep.p50.Round(time.Microsecond), rep.p90.Round(time.Microsecond), rep.p99.Round(time.Microsecond), rep.max.Round(time.Microsecond))
		if rep.dropped > 0 {
			fmt.Fprintf(w, "latency samples beyond the bound, not in the quantiles: %d\n", rep.dropped)
		}
	}
	fmt.Fprintf(w, "load average (1 min) at start and end of window: %.1f, %.1f\n", rep.load0, rep.load1)
	fmt.Fprintf(w, "load generator CPU over the window: %.2f cores\n", rep.selfCPU.Seconds()/secs)
	if rep.burnPid != 0 {
		fmt.Fprintf(w, "neighbour (-burn %d, pid %d) CPU over the window: %.2f cores\n", rep.cfg.burn, rep.burnPid, rep.burnCPU.Seconds()/secs)
	}
	c := rep.cnt
	fmt.Fprintf(w, "errors: %d (dial %d, request %d, overload %d, session lost %d, closed early %d, error frames %d); reconnects %d\n",
		c.errors(), c.errDial.Load(), c.errRequest.Load(), c.errOverload.Load(), c.sessionsLost.Load(), c.closedEarly.Load(), c.errFrames.Load(), c.reconnects.Load())
	if rep.firstDialErr != nil {
		fmt.Fprintf(w, "first dial error: %v\n", rep.firstDialErr)
	}
	if rep.cfg.pid != 0 {
		fmt.Fprintf(w, "gateway RSS (pid %d): before %d KiB, sessions held %d KiB, end %d KiB\n", rep.cfg.pid, rep.rssBase, rep.rssHeld, rep.rssEnd)
		if rep.maxHeld > 0 {
			fmt.Fprintf(w, "per session: %.1f KiB\n", float64(rep.rssHeld-rep.rssBase)/float64(rep.maxHeld))
		}
		if rep.cpu > 0 {
			// Each frame in or out of the load is one the gateway relayed
			// or answered.
			fmt.Fprintf(w, "gateway CPU over the window: %.2f cores; %.0f frames per gateway CPU-second\n",
				rep.cpu.Seconds()/secs, float64(rep.framesIn+rep.framesOut)/rep.cpu.Seconds())
		}
	}
}
