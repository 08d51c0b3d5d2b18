package gateway

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Messages delivered to a node that died before writing them (docs/
// cluster.md "Delivery across nodes"). A message relayed to a session
// owned by another node is in that session's window there at once, and
// its owner answers with the sequence it got; the message's sender has
// it acknowledged with its own next state, while the owner writes the
// session's window with its writer's next round. An owner dying in
// between lost the message, acknowledged to its sender, and the report
// timed out (408). So the node that relayed it (the message's host)
// keeps each message it delivered to another node until the receiver
// answers it: an answer proves the message written, for a session's
// frames go out to its client only once written (persist.go). No notice
// is needed, and none is sent: the answer comes back to the host anyway,
// as the report.
//
// When the owner dies first (its lease gone), or the session is found
// at another node while deliveries to its earlier owner are unanswered
// (a resume there), those deliveries are sent again, in order, in front
// of anything else for the session: to its new owner, or here, taking
// the session from its dead owner for its client's resume
// (deadsession.go). Sending one again is safe: a relay is marked by its
// origin in the receiving session's record, written with it, so one its
// first owner did write is answered with the sequence it got then and
// not sent twice (relays.go); and nothing of its stream overtakes it (a
// later frame to the session goes behind it, or, a request, is refused
// as behind waiting frames). The new owner numbers it anew: the
// messaging handler moves its delivery to the new correlation id
// (messaging.Handler.Resend), so the receiver's answer is its sender's
// report. A delivery its handler no longer holds (answered; dropped at
// the report timeout) is not sent again, and is forgotten.
//
// Only messages relayed for a client's send are kept so: they carry the
// origin that makes a resend safe, and their handler matches the answer
// by its sequence. A call's frames that its host relays to a session on
// another node, and a host's delivery reports to a sender's session on
// another node, are kept until that node has written them (keptcalls.go).
// Not kept (lost with a node dying within a round, as before): a message
// from the SIP side (no origin).

// maxKept bounds the deliveries kept for one session and maxKeptAll in
// all; past them the oldest of the session goes (counted, logged), as
// does one kept past holdFor: the lease of a node that died has ended
// by then, and its deliveries were sent again.
const (
	maxKept    = 64
	maxKeptAll = 4096
)

// kindKept counts, in jsonrtc_cluster_requests_total, the deliveries
// kept until answered, by outcome.
const (
	kindKept     = "kept_message"
	keptResent   = "resent"   // its node died or lost the session: sent again
	keptAnswered = "answered" // the same, but its handler held it no more
	keptExpired  = "expired"
	keptFull     = "full"
)

// errSentBefore: deliveries an earlier owner of the session took and
// its client did not answer went in front of the frame (sendFirst).
var errSentBefore = errors.New("gateway: deliveries to the session's earlier owner go first")

// keptDelivery is a message a node took for its session.
type keptDelivery struct {
	f     *protocol.Frame
	self  bool // self-correlated
	o     endpoint.Origin
	owner string
	seq   uint64
	at    time.Time
	// tk, for a call frame, is the ticket its owner gave it: it is kept
	// until the owner's mark passes it (keptcalls.go).
	tk ticketOf
}

// keptDeliveries are the deliveries kept, by session, in the order they
// were made.
type keptDeliveries struct {
	mu sync.Mutex
	m  map[string][]keptDelivery
	n  int
	// holds, when set (tests), stands for the messaging handler's Holds.
	holds func(id, corr string) bool
	// marks: what each owner's last reply said of its writes.
	marks map[string]ownerMark
}

// keepable reports whether the delivery of f, relaying the client frame
// o, is kept until answered.
func keepable(f *protocol.Frame, self bool, o endpoint.Origin) bool {
	return self && o.Session != "" && o.Sequence != 0 && f.Control.Type == protocol.TypeRequest &&
		f.EffectivePackage() == protocol.PackageMessaging && f.Header.Action == protocol.ActionSend
}

// corr is the correlation id the delivery's answer carries.
func (d *keptDelivery) corr() string { return d.f.Control.CorrelationID }

// keepDelivered keeps f, delivered to session id at owner as sequence
// seq (a call frame: numbered tk), until it is answered (written); it
// forgets the session's deliveries that were answered meanwhile.
func (g *Gateway) keepDelivered(id, owner string, f *protocol.Frame, self bool, o endpoint.Origin, seq uint64, tk ticketOf) {
	if g.node == nil || owner == g.self() {
		return
	}
	switch {
	case keptUntilWritten(f, self, o) && tk.n != 0: // (an owner that numbers nothing: not kept)
	case keepable(f, self, o):
		tk = ticketOf{life: tk.life} // a message is kept until answered
	default:
		return
	}
	c := *f // its sender may reuse f
	now := time.Now()
	k := &g.kept
	k.mu.Lock()
	q, expired := g.tidyKeptLocked(id, now)
	full := 0
	for len(q) > 0 && (len(q) >= maxKept || k.n >= maxKeptAll) {
		q[0] = keptDelivery{}
		q = q[1:]
		k.n--
		full++
	}
	if k.n >= maxKeptAll {
		// Full with other sessions' deliveries: this one is not kept.
		full++
		k.set(id, q)
		k.mu.Unlock()
		g.countKept(expired, full, id)
		return
	}
	k.set(id, append(q, keptDelivery{f: &c, self: self, o: o, owner: owner, seq: seq, at: now, tk: tk}))
	k.n++
	k.mu.Unlock()
	g.countKept(expired, full, id)
}

// tidyKeptLocked forgets the deliveries to session id that were
// answered, and those kept past holdFor (counted: expired); it returns
// those left. g.kept.mu is held.
func (g *Gateway) tidyKeptLocked(id string, now time.Time) (q []keptDelivery, expired int) {
	k := &g.kept
	q = k.m[id]
	if len(q) == 0 {
		return nil, 0
	}
	bound := g.holdFor()
	n := len(q)
	q = slices.DeleteFunc(q, func(d keptDelivery) bool {
		if now.Sub(d.at) > bound {
			expired++
			return true
		}
		if d.tk.n != 0 {
			return k.writtenLocked(&d)
		}
		if k.holds != nil {
			return !k.holds(id, d.corr())
		}
		return !g.msgs.Holds(id, d.corr())
	})
	k.n -= n - len(q)
	k.set(id, q)
	return q, expired
}

// sweepKept forgets, for every session, the deliveries answered or kept
// past holdFor: a session no more messages go to keeps none for long.
func (g *Gateway) sweepKept() {
	k := &g.kept
	k.mu.Lock()
	now := time.Now()
	expired := 0
	for id := range k.m {
		_, e := g.tidyKeptLocked(id, now)
		expired += e
	}
	k.mu.Unlock()
	g.countKept(expired, 0, "")
}

// set stores q as the deliveries of session id; k.mu is held.
func (k *keptDeliveries) set(id string, q []keptDelivery) {
	if len(q) == 0 {
		delete(k.m, id)
		return
	}
	if k.m == nil {
		k.m = map[string][]keptDelivery{}
	}
	k.m[id] = q
}

func (g *Gateway) countKept(expired, full int, id string) {
	if g.countTrimmed(kindKept, keptExpired, keptFull, expired, full) {
		g.rlog.Warn("kept messages", "messages delivered to another node and not answered forgotten: too many", "session_id", id, "forgotten", full)
	}
}

// countTrimmed counts, in jsonrtc_cluster_requests_total under kind,
// what a bounded keep forgot: expired past its bound (outcome
// expiredAs) and pushed out when full (fullAs). It reports whether any
// was pushed out, for the caller to log.
func (g *Gateway) countTrimmed(kind, expiredAs, fullAs string, expired, full int) bool {
	if expired > 0 {
		g.metrics.cluster.WithLabelValues(kind, expiredAs).Add(float64(expired))
	}
	if full > 0 {
		g.metrics.cluster.WithLabelValues(kind, fullAs).Add(float64(full))
	}
	return full > 0
}

// takeFrom removes and returns, in order, the deliveries to session id
// that gone reports true for.
func (k *keptDeliveries) takeFrom(id string, gone func(d *keptDelivery) bool) []keptDelivery {
	k.mu.Lock()
	defer k.mu.Unlock()
	q := k.m[id]
	var out []keptDelivery
	q = slices.DeleteFunc(q, func(d keptDelivery) bool {
		if !gone(&d) {
			return false
		}
		out = append(out, d)
		return true
	})
	k.n -= len(out)
	k.set(id, q)
	return out
}

// sendFirst sends the deliveries to session id that a node other than
// owner took and its client did not answer, before a frame goes to owner (sendVia):
// one by one, at once, wherever the session is. It reports whether
// frames wait for the session then: the first that could not be
// delivered now (its node not known dead yet, a resume under way) and
// those after it wait, in front of the frames waiting already.
//
// The common case is a session resumed on another node: its old owner,
// alive, wrote them before letting it go, and its client has not
// answered them yet. Each is then answered at once with the sequence it got
// (relay marks), and the caller's frame goes on.
func (g *Gateway) sendFirst(id, owner string) bool {
	if !g.keptElsewhere(id, owner) {
		return false
	}
	frames, from := g.resendable(id, func(d *keptDelivery) bool { return d.owner != owner })
	if len(frames) == 0 {
		return g.hasWaiting(id)
	}
	g.logResent(id, from, frames)
	if g.hasWaiting(id) || slices.ContainsFunc(frames, func(wf *waitingFrame) bool { return wf.callRequest }) {
		// A call's request goes in the queue: its call, told the
		// correlation id it gets, takes the call's lock, which this
		// node's sender of the frame sendFirst goes in front of may
		// hold.
		g.waitFirst(id, frames)
		return true
	}
	for i, wf := range frames {
		seq, err := g.deliverOnce(id, wf.f, wf.self, wf.o, true)
		switch {
		case err == nil || takenBefore(wf, err):
			g.finish(id, wf, seq, true)
		case errors.Is(err, errSentBefore) || errors.Is(err, errMoved) || errors.Is(err, errOwnerResuming):
			g.waitFirst(id, frames[i:])
			return true
		default:
			g.finish(id, wf, 0, false)
			g.metrics.cluster.WithLabelValues(kindWaiting, "dropped").Inc()
			g.rlog.Warn("cluster deliver", "message sent again not delivered", "session_id", id, "err", err)
		}
	}
	return g.hasWaiting(id)
}

// keptElsewhere reports whether deliveries to session id that a node
// other than owner took are kept.
func (g *Gateway) keptElsewhere(id, owner string) bool {
	u := &g.kept
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.ContainsFunc(u.m[id], func(d keptDelivery) bool { return d.owner != owner })
}

// resend puts the deliveries to session id that gone reports true for
// in front of the frames waiting for it; it returns how many.
func (g *Gateway) resend(id string, gone func(d *keptDelivery) bool) int {
	frames, from := g.resendable(id, gone)
	if len(frames) == 0 {
		return 0
	}
	g.logResent(id, from, frames)
	g.waitFirst(id, frames)
	return len(frames)
}

// countFunc counts the elements of s that f reports true for.
func countFunc[E any](s []E, f func(E) bool) int {
	n := 0
	for _, e := range s {
		if f(e) {
			n++
		}
	}
	return n
}

// logResent logs the deliveries to session id that node from took and
// that are sent again: messages, delivery reports, and a call's frames.
func (g *Gateway) logResent(id, from string, frames []*waitingFrame) {
	msgs := countFunc(frames, func(wf *waitingFrame) bool { return wf.redo != nil })
	reports := countFunc(frames, func(wf *waitingFrame) bool { return wf.redo == nil && isSendReport(wf.f) })
	g.log.Info("deliveries to a node not answered sent again", "session_id", id, "node", from, "messages", msgs, "reports", reports,
		"call_frames", len(frames)-msgs-reports)
}

// resendable takes out the deliveries to session id that gone reports
// true for and returns the call frames and the messages its messaging
// handler still holds, as frames to send again, and the owner of the
// first.
func (g *Gateway) resendable(id string, gone func(d *keptDelivery) bool) ([]*waitingFrame, string) {
	ds := g.kept.takeFrom(id, gone)
	if len(ds) == 0 {
		return nil, ""
	}
	until := time.Now().Add(g.holdFor())
	frames := make([]*waitingFrame, 0, len(ds))
	answered := 0
	for _, d := range ds {
		if d.tk.n != 0 {
			// A call frame or a host's report: numbered anew, its
			// correlation id kept (a response's is its request's); a
			// request's is the one it gets, which its call is told
			// (keptcalls.go).
			f := *d.f
			f.Control.Sequence, f.Control.AckSequence = 0, 0
			wf := &waitingFrame{f: &f, self: d.self, o: d.o, until: until}
			if d.callRequest() {
				// Its call is asked for it as it goes (deliverWaiting),
				// not here: this may run under a call's lock (sendFirst).
				f.Control.CorrelationID, wf.callRequest, wf.was = "", true, d.corr()
			}
			frames = append(frames, wf)
			continue
		}
		redo := g.msgs.Resend(id, d.corr())
		if redo == nil {
			answered++
			continue
		}
		f := *d.f
		f.Control.Sequence, f.Control.CorrelationID, f.Control.AckSequence = 0, "", 0
		frames = append(frames, &waitingFrame{f: &f, self: true, o: d.o, until: until, redo: redo, was: d.corr()})
	}
	if answered > 0 {
		g.metrics.cluster.WithLabelValues(kindKept, keptAnswered).Add(float64(answered))
	}
	// A call's request is counted as it goes, resent or answered
	// (deliverWaiting): its call may have had its answer meanwhile.
	if n := len(frames) - countFunc(frames, func(wf *waitingFrame) bool { return wf.callRequest }); n > 0 {
		g.metrics.cluster.WithLabelValues(kindKept, keptResent).Add(float64(n))
	}
	return frames, ds[0].owner
}

// keptStale is how long a delivery to another node goes unanswered
// before it is sent again (resendStale).
const keptStale = 2 * time.Second

// resendStale sends again, wherever their sessions are, the deliveries
// unanswered past keptStale. Their node may have restarted within a
// lease (never seen dead) without writing them, or lost the session to a
// resume elsewhere (a takeover it answered with nothing to let go, its
// copy gone with its restart): no death and no later delivery to the
// session would send them again, and the sender, waiting for the
// report, sends nothing more to it (the chaos test with node kills:
// most of the messages left never received, their senders given 408
// once the host died in turn). Sent again, one its node did write is
// answered with the sequence it got then (its relay mark), and nothing
// reaches the client twice; a receiver merely slow to answer costs a
// request every keptStale until it does, or the report timeout.
func (g *Gateway) resendStale() {
	stale := keptStale
	if d := g.keptStaleFor.Load(); d < 0 {
		return
	} else if d > 0 {
		stale = time.Duration(d)
	}
	now := time.Now()
	u := &g.kept
	u.mu.Lock()
	var ids []string
	expired := 0
	for id := range u.m {
		q, e := g.tidyKeptLocked(id, now)
		expired += e
		if slices.ContainsFunc(q, func(d keptDelivery) bool { return d.tk.n == 0 && now.Sub(d.at) > stale }) {
			ids = append(ids, id)
		}
	}
	u.mu.Unlock()
	g.countKept(expired, 0, "")
	for _, id := range ids {
		if g.hasWaiting(id) {
			continue // sent again already, or waiting for the session
		}
		// Messages only: a call frame sent again is kept again under a
		// new ticket, which only the owner's next reply passes; to an
		// owner fallen quiet, it went again every keptStale for as long
		// as the session lived.
		g.resend(id, func(d *keptDelivery) bool { return d.tk.n == 0 })
	}
}

// resendStaleEvery runs resendStale every second.
func (g *Gateway) resendStaleEvery() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			g.resendStale()
		case <-g.ctx.Done():
			return
		}
	}
}

// resendDead sends again the deliveries the dead node took and its
// sessions' clients did not answer.
func (g *Gateway) resendDead(node string) {
	u := &g.kept
	u.mu.Lock()
	var ids []string
	for id, q := range u.m {
		if slices.ContainsFunc(q, func(d keptDelivery) bool { return d.owner == node }) {
			ids = append(ids, id)
		}
	}
	u.mu.Unlock()
	for _, id := range ids {
		g.resend(id, func(d *keptDelivery) bool { return d.owner == node })
	}
}

// takenBefore reports whether wf, a frame sent again (a call's frame,
// keptcalls.go, or a request with the correlation id it had, was),
// failed with err only because its owner took it before: older than the
// sequences its stream's mark keeps. One a later relay of its stream
// overtook (errRelayOvertaken) was not taken.
func takenBefore(wf *waitingFrame, err error) bool {
	return errors.Is(err, errRelayForgotten) && (wf.redo == nil || wf.was != "") && wf.held == "" && !wf.orphan
}
