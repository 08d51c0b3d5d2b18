package gateway

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// A frame for a session whose node died, sent before its client has
// resumed anywhere, found nobody: the session's record names the dead
// node, whose subject has no responders, and sendVia gave up. The sender
// had it acknowledged to its own client already (a call's adopter
// relaying the other party's re-offer or hang-up), so it was lost
// (docs/cluster.md "A dead node"). Once the dead node's lease is gone,
// the sending node takes the session over itself, as a takeover of a
// dead owner's session at a resume does (compare-and-set on the record,
// naming this node), and holds it waiting for its client's resume, as a
// node restarted on its store holds its own: the frame is sent to it
// here, retained and written with its record, and the client's resume
// wherever it lands takes the session from this node, a live owner, with
// the frame.

// Only a frame of an interaction the session is in takes it (mayTake):
// a new call for a session whose node died is refused 480 as before, for
// its sender to try again (a SIP caller gets Retry-After: test/cluster
// TestBalancedInviteToDeadNode), rather than ring a session whose client
// may never come back; a message waits for the client (below).
//
// The session's limits are checked before the record is taken: refused,
// the record is left to the client's resume elsewhere. Tables found full
// after it was taken leave a record naming this node without the session
// here: a resume elsewhere is told there is nothing to let go, and takes
// it over as from a dead owner.

// adoptSession takes the session id over from dead, the owner its
// record names, once dead's lease is gone; it reports whether the
// session is this node's now (taken, or taken by another of its frames
// before).
func (g *Gateway) adoptSession(id, dead string) bool {
	if g.node == nil || dead == "" || dead == g.self() || !g.node.Down(dead) {
		return false
	}
	// Not waited for: a resume of the session under way here (which may
	// be what sends: a call adopted at its leg's resume) puts it in the
	// tables, where the caller's next try finds it.
	unlock := g.resuming.tryLock(id)
	if unlock == nil {
		return false
	}
	defer unlock()
	if g.lookup(id) != nil {
		return true
	}
	r, rev, err := g.restore(id)
	if err != nil || r == nil || r.Owner != dead {
		// Gone, unreadable, or resumed elsewhere meanwhile: the caller
		// looks the owner up again.
		return false
	}
	ok, err := g.takeRecord(r, rev, true)
	if !ok {
		g.metrics.cluster.WithLabelValues(kindDeadSession, "failed").Inc()
		g.rlog.Warn("dead session", "session of a dead node not taken for a frame sent to it", "session_id", id, "node", dead, "err", err)
		return false
	}
	g.metrics.cluster.WithLabelValues(kindDeadSession, "taken").Inc()
	g.log.Info("session of a dead node taken for a frame sent to it; waiting for its client", "session_id", id, "node", dead)
	return true
}

// mayTake reports whether f, relaying the client frame o names, may take
// a dead node's session (adoptSession): a frame that is no request, or a
// request of a call the session is in (relayed by the call's host, its
// origin naming the call's stream), not a new call's start or a message.
func mayTake(f *protocol.Frame, o endpoint.Origin) bool {
	return f.Control.Type != protocol.TypeRequest || o.Stream != ""
}

// kindDeadSession counts adoptSession in jsonrtc_cluster_requests_total.
const kindDeadSession = "dead_session"

// A frame for a session whose node died, sent before that node's lease
// is gone, finds nobody either, and its death is not known yet: taking
// the session over then would take it from a node that may be alive
// (its route a moment late). Such a frame waits instead, on the sending
// node, in order with the later frames for the same session, and is
// delivered once the owner answers again or, its lease gone, the session
// is taken as above: a host's relay of a hang-up to the callee whose node
// had just been killed was lost, and the callee, resumed elsewhere, held
// a call its caller had ended. Only a frame that is no request waits,
// or a web user's message (mayWait): a request's sender takes its
// sequence at once, to match the answer, and a call's request fails at
// once, as it would have without the wait (with frames waiting before
// it too, it waits in its sender's dispatch for them to go, up to
// deliverResumeWait: it would overtake them); a message's handler records it under
// a sequence of its own meanwhile (heldSeq). A message waits for its
// session's client to resume somewhere, its node dead or not, and takes
// no session (deliverOnce's take). Bounded:
// maxWaitingFrames a session, maxWaitingAll in all (past them a frame
// fails, as it would have), each frame holdFor.

const (
	maxWaitingFrames = 32
	maxWaitingAll    = 4096
)

// waitingFrames are the frames waiting for their sessions' nodes, by
// session.
type waitingFrames struct {
	mu sync.Mutex
	m  map[string][]*waitingFrame
	n  int
	// drained has, for a session whose frames a request waits behind
	// (sendVia), the channel closed as its queue goes.
	drained map[string]chan struct{}
}

// goneLocked forgets session id's queue, and wakes whoever waits for
// it to go; w.mu is held.
func (w *waitingFrames) goneLocked(id string) {
	delete(w.m, id)
	if ch := w.drained[id]; ch != nil {
		close(ch)
		delete(w.drained, id)
	}
}

// drained returns a channel closed once no frame waits for session id;
// nil when none waits now.
func (g *Gateway) drained(id string) <-chan struct{} {
	w := &g.awaitingNode
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.m[id]; !ok {
		return nil
	}
	if w.drained == nil {
		w.drained = map[string]chan struct{}{}
	}
	ch := w.drained[id]
	if ch == nil {
		ch = make(chan struct{})
		w.drained[id] = ch
	}
	return ch
}

// waitDrained waits, up to until, for the frames waiting for session id
// to go; it reports whether they did.
func (g *Gateway) waitDrained(id string, until time.Time) bool {
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for counted := false; ; {
		ch := g.drained(id)
		if ch == nil {
			return true
		}
		if !counted {
			counted = true
			g.metrics.cluster.WithLabelValues(kindWaiting, "request_behind").Inc()
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-g.ctx.Done():
			return false
		}
	}
}

type waitingFrame struct {
	f     *protocol.Frame
	self  bool // self-correlated
	o     endpoint.Origin
	until time.Time
	// redo, for a message delivered again (keptmsgs.go), is told the
	// correlation id it got, or that it was not delivered.
	redo func(newCorr string, delivered bool)
	// held, for a message not delivered yet, is the correlation id its
	// messaging handler recorded it under (heldSeq); its redo is taken
	// once the record is there. Such a message takes no dead owner's
	// session (adoptSession): it waits for the session's client to
	// resume somewhere, up to its bound, as a new call would not.
	held string
	// orphan: a message an earlier node of its sender took, from the
	// sender's record (outbox.go): no handler here holds it.
	orphan bool
	// callRequest: a call's request sent again (keptcalls.go), whose
	// redo tells its call the correlation id it gets.
	callRequest bool
	// was, for a request sent again (a message, a call's request), is
	// the correlation id it got where it was taken first: the one it
	// keeps when it turns out taken there (takenBefore).
	was string
	// outbox is its key in its sender's record, if it is there.
	outbox string
}

// mayWaitAfter is mayWaitAfter for wf: a call's request sent again
// waits as a call's other frames do (its redo tells its call the
// correlation id it gets).
func (wf *waitingFrame) mayWaitAfter(err error) bool {
	if wf.callRequest {
		return notThereYet(err)
	}
	return mayWaitAfter(err, wf.f, wf.self, wf.o)
}

// finish tells the messaging handler how a message waiting for session
// id ended, at sequence seq, or the call a call's request sent again is
// of.
func (g *Gateway) finish(id string, wf *waitingFrame, seq uint64, delivered bool) {
	if wf.redo == nil && wf.held != "" {
		wf.redo = g.msgs.Resend(id, wf.held)
	}
	if wf.redo == nil {
		return
	}
	corr := "s" + strconv.FormatUint(seq, 10)
	if delivered && seq == 0 {
		// Taken before, its sequence forgotten (takenBefore): it keeps
		// the correlation id it got then, under which its answer comes
		// (its receiver's client sends it again as it resumes, if its
		// node died first), or none does and its report times out.
		// Before, a message so taken was reported not delivered (480).
		corr = wf.was
	}
	wf.redo(corr, delivered)
	wf.redo = nil
}

// mayWait reports whether f may wait for its session's node: its sender
// needs no sequence back (no request), or, a client's message, it has
// its messaging handler record the delivery under a correlation id of
// its own until then (heldSeq).
func mayWait(f *protocol.Frame, self bool, o endpoint.Origin) bool {
	return f.Control.Type != protocol.TypeRequest || keepable(f, self, o)
}

// mayWaitAfter reports whether f (mayWait), whose delivery failed with
// err, waits for its session. It does when nobody answered for the
// session's node (dead or gone); when the node named by the session's
// record says it has not the session, or not yet (a node restarted a
// moment ago, its sessions taken over meanwhile, or a resume under way
// there: its client resumes somewhere soon); and, for a client's
// message, when the node did not answer in time (killed with the
// request in flight, or slow): it may have taken it, and a message sent
// again is taken once (its relay mark, relays.go). Before, the last two
// were refused 480: most of the 480s the chaos test with node kills
// counted. So does it when its session's record could not be read and
// nothing else named its node (a store electing a leader): taken for an
// end, it was dropped. A host's delivery report waits after a timeout
// too: its owner drops a report sent again that it took
// (hostReportUnawaitedLocked), and given up, it was lost.
func mayWaitAfter(err error, f *protocol.Frame, self bool, o endpoint.Origin) bool {
	if !mayWait(f, self, o) {
		return false
	}
	return notThereYet(err) || errors.Is(err, context.DeadlineExceeded) && (keepable(f, self, o) || isSendReport(f))
}

// notThereYet reports whether err, a delivery's, says its session is
// not where it was looked for yet: its node gone or not owning it, a
// resume under way there, or its record not read.
func notThereYet(err error) bool {
	return errors.Is(err, errMoved) || errors.Is(err, errOwnerResuming) || errors.Is(err, errRecordUnread)
}

// heldSeqBase is above every sequence a session gives (2^53-1 at most,
// session.ErrSequenceExhausted): the sequences heldSeq returns name no
// frame.
const heldSeqBase = 1 << 62

// heldSeq returns a sequence for a message that waits for its
// session's node, under which its handler records the delivery until
// the session's owner numbers it (deliverWaiting moves it there).
func (g *Gateway) heldSeq() uint64 { return heldSeqBase + g.heldSeqs.Add(1) }

// errWaitingBefore: a request for a session with frames waiting for its
// node (it would overtake them).
var errWaitingBefore = errors.New("gateway: frames wait for the session's node")

// errWaitingFull: the waits for the session's node are full.
var errWaitingFull = errors.New("gateway: too many frames wait for the session's node")

// waitBehind queues f (mayWait) behind the frames waiting for session id,
// if there are any (queued; err when they are full, f not queued); seq
// is the sequence a request's sender records it under (heldSeq).
func (g *Gateway) waitBehind(id string, f *protocol.Frame, self bool, o endpoint.Origin) (queued bool, seq uint64, err error) {
	queued, _, seq, err = g.enqueue(id, f, self, o, false)
	return queued, seq, err
}

// waitFor starts the wait of f (mayWait) for session id, whose owner
// did not answer, or queues it behind the frames waiting already;
// errWaitingFull when the waits are full. seq is as waitBehind's.
func (g *Gateway) waitFor(id string, f *protocol.Frame, self bool, o endpoint.Origin) (uint64, error) {
	_, first, seq, err := g.enqueue(id, f, self, o, true)
	if first && !g.goTracked(func() { g.deliverWaiting(id) }) {
		g.dropWaiting(id, "the gateway is shutting down")
	}
	return seq, err
}

// enqueue queues f for session id behind the frames waiting for it, or
// (start) as the first; first says it is, for its delivery to start.
func (g *Gateway) enqueue(id string, f *protocol.Frame, self bool, o endpoint.Origin, start bool) (queued, first bool, seq uint64, err error) {
	if !start && !g.hasWaiting(id) {
		return false, false, 0, nil
	}
	// Written with its sender's state, if that lives here (outbox.go).
	var k string
	if keepable(f, self, o) {
		k = g.putOutbox(id, f, o)
	}
	queued, first, seq, err = g.enqueueLocked(id, f, self, o, start, k)
	if !queued || err != nil {
		// Not under w.mu (popWaiting).
		g.dropOutbox(o.Session, k)
	}
	return queued, first, seq, err
}

// enqueueLocked is enqueue's queueing, under the waits' lock; k is f's
// key in its sender's record.
func (g *Gateway) enqueueLocked(id string, f *protocol.Frame, self bool, o endpoint.Origin, start bool, k string) (queued, first bool, seq uint64, err error) {
	w := &g.awaitingNode
	w.mu.Lock()
	defer w.mu.Unlock()
	q, ok := w.m[id]
	if !ok && !start {
		return false, false, 0, nil
	}
	if len(q) >= maxWaitingFrames || w.n >= maxWaitingAll {
		g.metrics.cluster.WithLabelValues(kindWaiting, "full").Inc()
		g.rlog.Warn("cluster deliver", "frame for a session whose node does not answer not delivered: too many wait", "session_id", id)
		return true, false, 0, errWaitingFull
	}
	if w.m == nil {
		w.m = map[string][]*waitingFrame{}
	}
	wf := &waitingFrame{f: f, self: self, o: o, until: time.Now().Add(g.holdFor()), outbox: k}
	if f.Control.Type == protocol.TypeRequest {
		seq = g.heldSeq()
		wf.held = "s" + strconv.FormatUint(seq, 10)
	}
	w.m[id] = append(q, wf)
	w.n++
	if !ok {
		g.metrics.cluster.WithLabelValues(kindWaiting, "waiting").Inc()
	}
	return true, !ok, seq, nil
}

// hasWaiting reports whether frames wait for session id's node.
func (g *Gateway) hasWaiting(id string) bool {
	g.awaitingNode.mu.Lock()
	defer g.awaitingNode.mu.Unlock()
	_, ok := g.awaitingNode.m[id]
	return ok
}

// deliverWaiting delivers the frames waiting for session id, in order,
// trying the first again (backing off up to a second) until it is
// delivered, its session is gone, or its bound passes.
func (g *Gateway) deliverWaiting(id string) {
	wait := 50 * time.Millisecond
	for {
		w := &g.awaitingNode
		w.mu.Lock()
		q := w.m[id]
		if len(q) == 0 {
			w.goneLocked(id)
			w.mu.Unlock()
			return
		}
		wf := q[0]
		w.mu.Unlock()
		if wf.held != "" && wf.redo == nil && !wf.orphan {
			// Its delivery, recorded under its held id, is moved to the
			// id it gets (messaging.Handler.Resend); recorded just after
			// the wait began (its relay returns first).
			if wf.redo = g.msgs.Resend(id, wf.held); wf.redo == nil {
				if g.msgs.Holds(id, wf.held) && time.Now().Before(wf.until) {
					if !sleepCtx(g.ctx, 5*time.Millisecond) {
						g.dropWaiting(id, "the gateway is shutting down")
						return
					}
					continue
				}
				// Answered for: expired, or its session ended.
				g.popWaiting(id, wf)
				continue
			}
		}
		if wf.callRequest && wf.redo == nil {
			if wf.redo = g.calls.Resend(id, wf.f.Control.SubsessionID, wf.was); wf.redo == nil {
				// Answered, or its call ended, meanwhile: nothing to
				// send again.
				g.metrics.cluster.WithLabelValues(kindKept, keptAnswered).Inc()
				g.popWaiting(id, wf)
				continue
			}
			g.metrics.cluster.WithLabelValues(kindKept, keptResent).Inc()
		}
		seq, err := g.deliverOnce(id, wf.f, wf.self, wf.o, wf.held == "" && !wf.orphan)
		switch {
		case errors.Is(err, errSentBefore):
			// Deliveries to its earlier owner, not answered, went in
			// front (keptmsgs.go).
			continue
		case err == nil || takenBefore(wf, err):
			g.metrics.cluster.WithLabelValues(kindWaiting, "delivered").Inc()
			g.finish(id, wf, seq, true)
		case wf.mayWaitAfter(err) && time.Now().Before(wf.until):
			// Nobody there yet, or a takeover under way: asked again.
			if !sleepCtx(g.ctx, wait) {
				g.dropWaiting(id, "the gateway is shutting down")
				return
			}
			wait = min(2*wait, time.Second)
			continue
		default:
			g.finish(id, wf, 0, false)
			g.metrics.cluster.WithLabelValues(kindWaiting, "dropped").Inc()
			g.rlog.Warn("cluster deliver", "frame that waited for its session's node not delivered", "session_id", id, "err", err)
		}
		wait = 50 * time.Millisecond
		g.popWaiting(id, wf)
	}
}

// popWaiting removes wf from the frames waiting for session id, by
// identity: frames may have gone in front of it meanwhile.
func (g *Gateway) popWaiting(id string, wf *waitingFrame) {
	w := &g.awaitingNode
	w.mu.Lock()
	if q := w.m[id]; len(q) > 0 {
		if k := slices.Index(q, wf); k >= 0 {
			w.m[id] = slices.Delete(q, k, k+1)
			w.n--
		}
	}
	w.mu.Unlock()
	// Not under w.mu: a session's lock is taken before it elsewhere.
	g.dropOutbox(wf.o.Session, wf.outbox)
}

// deliverOnce tries once to deliver f to session id, wherever its record
// says it is: here, at its owner, or (take) here after taking it from a
// dead owner. It returns the sequence f got; errSentBefore when deliveries
// the session's earlier owner that were not answered went in front of f
// instead.
func (g *Gateway) deliverOnce(id string, f *protocol.Frame, self bool, o endpoint.Origin, take bool) (uint64, error) {
	owner, err := g.findOwner(id)
	if owner == "" {
		return 0, cmp.Or(err, errEnded)
	}
	taken := false
	owner = g.ownerHere(id, owner)
	// Deliveries to the session's earlier owners, not answered, go in
	// front (keptmsgs.go).
	elsewhere := func(owner string) bool {
		return g.keptElsewhere(id, owner) && g.resend(id, func(d *keptDelivery) bool { return d.owner != owner }) > 0
	}
	if elsewhere(owner) {
		return 0, errSentBefore
	}
	if owner != g.self() {
		seq, tk, err := g.deliverTo(owner, id, f, self, o)
		if err == nil {
			g.keepDelivered(id, owner, f, self, o, seq, tk)
		}
		if !take || !errors.Is(err, errNobodyThere) || !g.adoptSession(id, owner) {
			return seq, err
		}
		if elsewhere(g.self()) {
			return 0, errSentBefore
		}
		taken = true
	}
	s := g.lookup(id)
	if s == nil {
		switch {
		case g.resuming.busy(id):
			return 0, errNobodyThere // resuming here: tried again
		case taken:
			// Taken for this frame, and let go again at once: its
			// client resumed on another node meanwhile, which the
			// next try finds. Taken for an end, it was dropped and a
			// message reported 480 (the chaos test with node kills:
			// a dead node's kept messages sent again, 5 in a run).
			return 0, errMoved
		case g.letGoLately(id):
			return 0, errMoved // let go in vain (letgo.go)
		}
		return 0, errEnded
	}
	seq, err := s.sendOrigin(f, self, g.self(), o)
	return seq, err
}

// dropWaiting drops the frames waiting for session id.
func (g *Gateway) dropWaiting(id, why string) {
	w := &g.awaitingNode
	w.mu.Lock()
	q := w.m[id]
	w.n -= len(q)
	w.goneLocked(id)
	w.mu.Unlock()
	for _, wf := range q {
		g.finish(id, wf, 0, false)
		g.dropOutbox(wf.o.Session, wf.outbox)
	}
	if n := len(q); n > 0 {
		g.metrics.cluster.WithLabelValues(kindWaiting, "dropped").Add(float64(n))
		g.rlog.Warn("cluster deliver", "frames that waited for their session's node dropped", "session_id", id, "frames", n, "why", why)
	}
}

// waitFirst puts frames in front of those waiting for session id, and
// starts their delivery if none was under way. Not bounded by
// maxWaitingFrames: they were delivered once, and acknowledged to their
// senders (keptmsgs.go bounds them).
func (g *Gateway) waitFirst(id string, frames []*waitingFrame) {
	w := &g.awaitingNode
	w.mu.Lock()
	q, running := w.m[id]
	if w.m == nil {
		w.m = map[string][]*waitingFrame{}
	}
	w.m[id] = append(frames, q...)
	w.n += len(frames)
	w.mu.Unlock()
	if !running {
		g.metrics.cluster.WithLabelValues(kindWaiting, "waiting").Inc()
		if !g.goTracked(func() { g.deliverWaiting(id) }) {
			g.dropWaiting(id, "the gateway is shutting down")
		}
	}
}

// kindWaiting counts the waits in jsonrtc_cluster_requests_total.
const kindWaiting = "waiting"
