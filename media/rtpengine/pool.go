package rtpengine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoInstance is returned for a new call when the pool has no instance
// to try.
var ErrNoInstance = errors.New("rtpengine: no instance in the pool")

// Instance is one rtpengine of a Pool: its ng address (a name for logs and
// metrics) and the Controller that reaches it.
type Instance struct {
	Addr string
	Ctl  Controller
}

// PoolOptions tunes a Pool; nil means the defaults.
type PoolOptions struct {
	// Interval between two pings of each instance (default 2s).
	Interval time.Duration
	// Logger gets an instance's going down and coming back (default:
	// discarded). The pings are the pool's own: nothing an outsider
	// sends triggers these lines.
	Logger *slog.Logger
}

// Pool spreads new calls over several rtpengine instances and keeps every
// later command of a call on the instance that took its first offer (the
// Session holds it: rtpengine keeps a call's state in one process only).
// Each instance is pinged every Interval once Start is called; one that
// does not answer is skipped by new calls until it answers again, and
// one that fails a call's first offer is marked down at once and the
// offer tried once on another (Adapter.Offer). Calls already on an
// instance that dies are not moved: their commands fail, as with a single
// instance (docs/media.md, "Failures").
type Pool struct {
	members []*member
	opt     PoolOptions
	rr      atomic.Uint64 // where the search for the least busy starts

	mu     sync.Mutex // guards cancel
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// member is one instance with its health and its share of the calls.
type member struct {
	addr  string
	ctl   Controller
	up    atomic.Bool
	calls atomic.Int64 // anchored sessions made on it and not yet deleted
}

// NewPool returns a Pool of the instances, all taken as up until a ping
// or an offer says otherwise. It pings nothing until Start.
func NewPool(instances []Instance, opt *PoolOptions) *Pool {
	p := &Pool{}
	if opt != nil {
		p.opt = *opt
	}
	if p.opt.Interval <= 0 {
		p.opt.Interval = 2 * time.Second
	}
	if p.opt.Logger == nil {
		p.opt.Logger = slog.New(slog.DiscardHandler)
	}
	for _, in := range instances {
		m := &member{addr: in.Addr, ctl: in.Ctl}
		m.up.Store(true)
		p.members = append(p.members, m)
	}
	return p
}

// Start pings every instance at once, returns when each has answered or
// timed out (so the pool starts with their health known), and then
// pings each every Interval, in a goroutine of its own (a silent
// instance holds its ping for the client's timeout), until Close.
func (p *Pool) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	var first sync.WaitGroup
	for _, m := range p.members {
		first.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watch(ctx, m, first.Done)
		}()
	}
	first.Wait()
}

// Close stops the pings and returns once their goroutines are done. It
// closes no Controller: whoever made them does.
func (p *Pool) Close() {
	p.mu.Lock()
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
}

// watch pings m until ctx ends; pinged is called after the first ping.
func (p *Pool) watch(ctx context.Context, m *member, pinged func()) {
	t := time.NewTicker(p.opt.Interval)
	defer t.Stop()
	for {
		err := m.ctl.Ping(ctx)
		if ctx.Err() != nil {
			pinged()
			return
		}
		p.mark(m, err)
		pinged()
		pinged = func() {}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// mark records the outcome of a ping (or of a failed offer) and logs a
// change.
func (p *Pool) mark(m *member, err error) {
	up := err == nil
	if m.up.Swap(up) == up {
		return
	}
	if up {
		p.opt.Logger.Info("rtpengine instance up", "addr", m.addr)
	} else {
		p.opt.Logger.Warn("rtpengine instance down: new calls avoid it", "addr", m.addr, "err", err)
	}
}

// pick returns the instance for a new call: among those up, the one with
// the fewest calls, ties broken round robin; skip (an instance that just
// failed this call) is never picked. With none up it picks among those
// down rather than fail outright: a ping may be stale, and the offer
// itself is a health check.
func (p *Pool) pick(skip *member) *member {
	n := len(p.members)
	if n == 0 {
		return nil
	}
	start := int(p.rr.Add(1) % uint64(n))
	var best, fallback *member
	for i := range n {
		m := p.members[(start+i)%n]
		if m == skip {
			continue
		}
		if !m.up.Load() {
			if fallback == nil || m.calls.Load() < fallback.calls.Load() {
				fallback = m
			}
			continue
		}
		if best == nil || m.calls.Load() < best.calls.Load() {
			best = m
		}
	}
	if best == nil {
		return fallback
	}
	return best
}

// InstanceState is what Pool.Instances reports of one instance.
type InstanceState struct {
	Addr  string
	Up    bool
	Calls int64 // anchored calls made on it and not deleted yet
}

// Instances reports each instance's health and calls, in the pool's
// order: the gateway's metrics read it.
func (p *Pool) Instances() []InstanceState {
	out := make([]InstanceState, len(p.members))
	for i, m := range p.members {
		out[i] = InstanceState{Addr: m.addr, Up: m.up.Load(), Calls: m.calls.Load()}
	}
	return out
}

// offer sends a call's first offer to an instance of the pool and returns
// the one that took it: when the first picked fails (no answer, or an
// error), the offer goes once to another. An instance that did not
// answer is marked down; one that answered with an error is not (the
// offer itself may be at fault). The caller's ctx bounds both tries.
func (p *Pool) offer(ctx context.Context, r *Request) (*member, *Response, error) {
	m := p.pick(nil)
	if m == nil {
		return nil, nil, ErrNoInstance
	}
	res, err := m.ctl.Offer(ctx, r)
	if err == nil || ctx.Err() != nil {
		return m, res, err
	}
	var re *Error
	if !errors.As(err, &re) {
		p.mark(m, err)
	}
	next := p.pick(m)
	if next == nil {
		return m, res, err
	}
	res, err = next.ctl.Offer(ctx, r)
	return next, res, err
}
