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

// ErrLost is returned by the commands of a Session whose instance was
// lost (Session.OnLost): its media is gone.
var ErrLost = errors.New("rtpengine: the call's instance was lost")

// maxOrphans bounds the deletes an instance owes while it does not
// answer; beyond it the oldest is left to rtpengine's own --timeout.
const maxOrphans = 1024

// Instance is one rtpengine of a Pool: its ng address (a name for logs and
// metrics) and the Controller that reaches it.
type Instance struct {
	Addr string
	Ctl  Controller
	// Weight is the instance's share of new calls against the others'
	// weights (0 means 1).
	Weight int
}

// PoolOptions tunes a Pool; nil means the defaults.
type PoolOptions struct {
	// Interval between two pings of each instance (default 2s).
	Interval time.Duration
	// LostAfter is how many pings in a row an instance fails before the
	// calls it holds are lost (default 2): their OnLost functions run.
	// The first failure only keeps new calls away.
	LostAfter int
	// FiguresInterval is how often each call's figures are queried
	// after a good ping of its instance (0: never), and kept: a lost
	// instance's calls end with the last ones (Session.LastFigures). The
	// cost is one query per call per interval, on the instance's ping
	// goroutine; a round stops at the first query that gets no answer
	// and lasts at most Interval, so the pings keep their pace.
	FiguresInterval time.Duration
	// Ledger, when set, is told of each call an instance takes and of
	// its delete, for Sweep after a crash.
	Ledger Ledger
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
// instance that dies cannot be moved (rtpengine hands none over): once it
// has failed LostAfter pings in a row they are lost, and their owners
// end them (Session.OnLost). The deletes an instance could not be sent
// (a first offer it did not answer in time, a lost call's) wait until
// it answers a ping again.
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
	addr   string
	ctl    Controller
	weight int64
	up     atomic.Bool
	calls  atomic.Int64 // anchored sessions made on it and not yet deleted
	// lost counts calls ended because the instance was lost; abandoned
	// the deletes it owed beyond maxOrphans.
	lost, abandoned atomic.Uint64
	fails           int // pings failed in a row: watch's own
	// started is when the instance's process started, as its uptime
	// last said (watch's own; zero until read).
	started time.Time
	queried time.Time // the last round of figures (watch's own)

	mu       sync.Mutex // guards sessions and orphans, never held across a command
	sessions map[*Session]struct{}
	orphans  []Request // deletes owed, sent once it answers a ping
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
	if p.opt.LostAfter <= 0 {
		p.opt.LostAfter = 2
	}
	if p.opt.Logger == nil {
		p.opt.Logger = slog.New(slog.DiscardHandler)
	}
	for _, in := range instances {
		m := &member{addr: in.Addr, ctl: in.Ctl, weight: int64(max(in.Weight, 1)), sessions: map[*Session]struct{}{}}
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
		if err != nil {
			m.fails++
			if m.fails >= p.opt.LostAfter {
				p.lose(m, err)
			}
		} else {
			m.fails = 0
			p.checkRestart(ctx, m)
			p.settle(ctx, m)
			p.queryFigures(ctx, m)
		}
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

// lose ends the calls m holds: it failed LostAfter pings in a row, and
// rtpengine keeps a call's media in one process. Each lost session's
// OnLost runs here, on m's ping goroutine; its delete is owed to m for
// when it answers again (a partition, not a crash, leaves the call
// there). Logged once per loss of the instance, not per call.
func (p *Pool) lose(m *member, err error) {
	n := m.drop(nil)
	if m.fails == p.opt.LostAfter || n > 0 {
		p.opt.Logger.Warn("rtpengine instance lost: its calls end", "addr", m.addr, "calls", n, "failed_pings", m.fails, "err", err)
	}
}

// drop marks the sessions of m that gone names (all of them when gone is
// nil) lost, counts them and runs their OnLost functions; it returns how
// many it dropped. Marked under m.mu, so that a Delete racing with the
// loss either took its session out first or finds it lost
// (Session.Delete).
func (m *member) drop(gone []*Session) int {
	m.mu.Lock()
	var fs []func()
	if gone == nil {
		for s := range m.sessions {
			fs = append(fs, s.lose())
		}
		clear(m.sessions)
	}
	for _, s := range gone {
		if _, ok := m.sessions[s]; ok {
			delete(m.sessions, s)
			fs = append(fs, s.lose())
		}
	}
	m.mu.Unlock()
	m.lost.Add(uint64(len(fs)))
	for _, f := range fs {
		if f != nil {
			f()
		}
	}
	return len(fs)
}

// uptimer is a Controller that reports how long its rtpengine has run
// (Client.Uptime); a pool's restart check needs it.
type uptimer interface {
	Uptime(ctx context.Context) (time.Duration, error)
}

// restartSlack absorbs the uptime's whole seconds and the time a
// statistics request takes: a start that moves later by more than this
// is a new process.
const restartSlack = 1500 * time.Millisecond

// checkRestart finds the calls an instance lost by restarting between
// two pings (a crash under a supervisor, an upgrade): ping cannot show
// it, and rtpengine keeps calls in memory only (unless it restores them
// from Redis). When the instance's start time has moved, each of its
// calls is queried, and those it no longer knows are lost as if the
// instance had died (OnLost, "media relay lost"); those it restored go
// on. A failed statistics request is no health signal: ping is.
func (p *Pool) checkRestart(ctx context.Context, m *member) {
	u, ok := m.ctl.(uptimer)
	if !ok {
		return
	}
	up, err := u.Uptime(ctx)
	if err != nil {
		return
	}
	start := time.Now().Add(-up)
	prev := m.started
	if prev.IsZero() || start.After(prev.Add(restartSlack)) {
		m.started = start
	}
	if prev.IsZero() || !start.After(prev.Add(restartSlack)) {
		return
	}
	m.mu.Lock()
	ss := make([]*Session, 0, len(m.sessions))
	for s := range m.sessions {
		ss = append(ss, s)
	}
	m.mu.Unlock()
	var gone []*Session
	for _, s := range ss {
		q := s.keysRequest()
		_, err := m.ctl.Query(ctx, &Request{CallID: q.CallID})
		var re *Error
		if errors.As(err, &re) {
			gone = append(gone, s)
		}
	}
	p.opt.Logger.Warn("rtpengine instance restarted: the calls it forgot end", "addr", m.addr, "calls", len(ss), "forgotten", len(gone))
	if len(gone) > 0 {
		m.drop(gone)
	}
}

// queryFigures queries the figures of m's calls when a round is due
// (FiguresInterval) and keeps them in each Session, for the end of a call
// whose instance is lost later. "Unknown call-id" (a call deleted in the
// meantime) is skipped; no answer ends the round, as it lasts at most
// Interval: the next ping tells whether m is going.
func (p *Pool) queryFigures(ctx context.Context, m *member) {
	if p.opt.FiguresInterval <= 0 || time.Since(m.queried) < p.opt.FiguresInterval {
		return
	}
	m.queried = time.Now()
	m.mu.Lock()
	ss := make([]*Session, 0, len(m.sessions))
	for s := range m.sessions {
		ss = append(ss, s)
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, p.opt.Interval)
	defer cancel()
	for _, s := range ss {
		k := s.keysRequest()
		res, err := m.ctl.Query(ctx, &Request{CallID: k.CallID, FromTag: k.FromTag})
		var re *Error
		switch {
		case errors.As(err, &re):
			continue
		case err != nil:
			return
		}
		s.keepFigures(res.Raw, time.Now())
	}
}

// owe records a delete m could not be sent, for settle.
func (m *member) owe(r Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.orphans) == maxOrphans {
		m.orphans = m.orphans[1:]
		m.abandoned.Add(1)
	}
	m.orphans = append(m.orphans, r)
}

// settle sends m the deletes it owes, now that it answers: a call made
// there by an offer whose answer came too late (the call went to
// another instance), or a lost call's. One it does not answer waits for
// the next ping; "Unknown call-id" means nothing was left.
func (p *Pool) settle(ctx context.Context, m *member) {
	for {
		m.mu.Lock()
		if len(m.orphans) == 0 {
			m.mu.Unlock()
			return
		}
		r := m.orphans[0]
		m.orphans = m.orphans[1:]
		m.mu.Unlock()
		_, err := m.ctl.Delete(ctx, &r)
		var re *Error
		if err != nil && !errors.As(err, &re) {
			m.owe(r)
			return
		}
	}
}

// lighter reports whether a new call weighs less on a than on b: the
// fewest calls per weight after it, (calls+1)/weight, which spreads calls
// in proportion to the weights (ties broken by the caller's order).
func lighter(a, b *member) bool {
	return (a.calls.Load()+1)*b.weight < (b.calls.Load()+1)*a.weight
}

// pick returns the instance for a new call: among those up, the one with
// the fewest calls per weight (lighter), ties broken round robin; skip (an instance that just
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
			if fallback == nil || lighter(m, fallback) {
				fallback = m
			}
			continue
		}
		if best == nil || lighter(m, best) {
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
	Addr   string
	Weight int
	Up     bool
	Calls  int64 // anchored calls made on it and not deleted yet
	// Lost counts the calls ended because the instance was lost;
	// Abandoned the deletes it owed that were left to its own timeout.
	Lost, Abandoned uint64
}

// Instances reports each instance's health and calls, in the pool's
// order: the gateway's metrics read it.
func (p *Pool) Instances() []InstanceState {
	out := make([]InstanceState, len(p.members))
	for i, m := range p.members {
		out[i] = InstanceState{Addr: m.addr, Weight: int(m.weight), Up: m.up.Load(), Calls: m.calls.Load(),
			Lost: m.lost.Load(), Abandoned: m.abandoned.Load()}
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
	if re == nil {
		// m may have made the call and its answer be late or lost: the
		// call goes on elsewhere, so m owes it a delete.
		m.owe(Request{CallID: r.CallID, FromTag: r.FromTag, DeleteNow: true})
	}
	res, err = next.ctl.Offer(ctx, r)
	return next, res, err
}
