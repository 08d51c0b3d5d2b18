package gateway

import (
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Adoptions of a dead host's calls (docs/cluster.md, "A dead node"): as
// a host's lease expires, each survivor adopts the calls of its live
// sessions that the host had (onNodeDown), and a node taking a session
// over adopts that session's (tookOver). Each adoption waits for the
// store, which elects new leaders for the dead host's buckets first:
// they ran one session at a time (8 at once on a node-down, a session's
// calls one after the other), and an adoption whose store stayed silent
// past resumeWait gave up and left the call's route on the dead host
// for good, until a frame of the call came (test/cluster
// TestCallsSurviveTheirHost adopted 80 to 92 of 100 calls at load 30 to
// 40). Now the calls are adopted deadAdoptions at a time, whichever
// session they belong to, and those the store left undecided are
// adopted again, backing off, until the store answers or their records
// would have expired (deadRetryFor).

// deadAdoptions bounds the adoptions of a dead host's calls run at once
// on a node, as startAdoptions does at start: each holds a few store
// round trips, and a store electing leaders answers them all late.
const deadAdoptions = startAdoptions

// deadCall is a call of session s whose route named host, dead.
type deadCall struct {
	s         *Session
	sub, host string
}

// eachBounded runs f on every element of items, n at a time, and
// returns once all are over.
func eachBounded[T any](n int, items []T, f func(T)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, n)
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(it)
		})
	}
	wg.Wait()
}

// deadRoutes returns the calls of s whose route names a host not alive,
// and removes s's other routes to such hosts (a message's answer has
// nobody to go to), but for a web user's messages, whose answers go to
// their senders then (reportdirect.go). A call's route stays until its adoption is over: a
// session taken over meanwhile by another node carries it there in its
// record, for that node to adopt the call (removed, it left the call to
// nobody).
func (s *Session) deadRoutes() []deadCall {
	g := s.g
	hosts := map[string]bool{}
	s.mu.Lock()
	for _, node := range s.routes {
		if node != g.self() {
			hosts[node] = false
		}
	}
	s.mu.Unlock()
	for node := range hosts {
		hosts[node] = g.node.Down(node)
	}
	var calls []deadCall
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, node := range s.routes {
		if !hosts[node] {
			continue
		}
		if k.pkg == protocol.PackageCall {
			calls = append(calls, deadCall{s: s, sub: k.key, host: node})
			continue
		}
		if _, ok := s.reportTo[k.key]; ok && k.pkg == protocol.PackageMessaging {
			continue // its answer goes to its sender (reportdirect.go)
		}
		delete(s.routes, k)
	}
	return calls
}

// adoptDead adopts the call c, whose host died: it goes on here, or
// where another node adopted it, or its client hears it is over. It
// reports whether the store left that undecided (the route then names
// the dead host still, for a later try, a frame's or a resume's).
func (g *Gateway) adoptDead(c deadCall) (undecided bool) {
	s := c.s
	k := routeKey{protocol.PackageCall, c.sub}
	host, gone := g.repl.adopt(s.id, c.sub)
	if host != "" || gone == "" {
		// The call goes on there (callrepl.go); or, the store
		// silent, the route stays for a later try.
		if host == "" {
			host = c.host
		}
		s.mu.Lock()
		if s.routes[k] == c.host {
			s.routes[k] = host
		}
		s.mu.Unlock()
		if host == c.host {
			g.metrics.cluster.WithLabelValues("host_down", "undecided").Inc()
			return true
		}
		g.metrics.cluster.WithLabelValues("host_down", "adopted").Inc()
		return false
	}
	s.mu.Lock()
	if s.routes[k] == c.host {
		delete(s.routes, k)
	}
	s.mu.Unlock()
	g.metrics.cluster.WithLabelValues("host_down", "shutdown").Inc()
	s.Send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: c.sub},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: s.identity, Target: s.identity, Reason: gone},
	}, true)
	return false
}

// adoptDeadRoutes ends the interactions of sessions whose host is not
// alive, or has their calls adopted (adoptDead), deadAdoptions at a
// time, and returns the sessions with a call the store left undecided.
func (g *Gateway) adoptDeadRoutes(sessions []*Session) []*Session {
	var calls []deadCall
	for _, s := range sessions {
		calls = append(calls, s.deadRoutes()...)
	}
	var mu sync.Mutex
	undecided := map[*Session]bool{}
	eachBounded(deadAdoptions, calls, func(c deadCall) {
		if g.adoptDead(c) {
			mu.Lock()
			undecided[c.s] = true
			mu.Unlock()
		}
	})
	seen := map[*Session]bool{}
	var again []*Session
	for _, c := range calls {
		if seen[c.s] {
			continue
		}
		seen[c.s] = true
		// Its calls count where they go on (clusterlimits.go), now
		// that the routes name their adopters.
		g.publishCalls(c.s)
		if undecided[c.s] {
			again = append(again, c.s)
		}
	}
	return again
}

// deadRetryFor bounds how long the adoptions the store left undecided
// are made again: past a record's lifetime and a resume's budget, the
// records of the dead host's calls have expired, and a frame of such a
// call finds it gone.
func (g *Gateway) deadRetryFor() time.Duration { return g.repl.ttl + g.resumeBudget() }

// retryDeadRoutes adopts again, backing off, the calls of sessions the
// store left undecided, until none is or deadRetryFor passes. A session
// gone from here (ended, or taken over by another node) is left out.
func (g *Gateway) retryDeadRoutes(sessions []*Session) {
	until := time.Now().Add(g.deadRetryFor())
	for wait := 250 * time.Millisecond; len(sessions) > 0 && time.Now().Before(until); wait = min(2*wait, 4*time.Second) {
		if !sleepCtx(g.ctx, wait) {
			return
		}
		live := sessions[:0]
		for _, s := range sessions {
			s.mu.Lock()
			gone := s.ended || s.movedTo != ""
			s.mu.Unlock()
			if !gone {
				live = append(live, s)
			}
		}
		sessions = g.adoptDeadRoutes(live)
	}
}
