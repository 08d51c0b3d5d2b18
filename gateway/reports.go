package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"slices"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Delivery reports owed (docs/cluster.md, "Delivery reports"). A
// message awaiting its report lives in the messaging handler of the
// node that took its send, in memory: when that node dies, drains away
// or restarts, the report never comes. The sender's session therefore
// keeps, in its record, the sends its client awaits a report for, with
// the node and the life of that node that took them and the time by
// which the handler would have answered 408 itself. Wherever the session
// lives, its owner sends the report the handler cannot: at once when the
// host is down or was an earlier life of this node, else at that time.

// awaited is a send whose delivery report the client awaits.
type awaited struct {
	Corr   string `json:"corr"`
	Sub    string `json:"sub,omitempty"`
	Target string `json:"target"`
	Node   string `json:"node,omitempty"`
	Life   string `json:"life"`
	// By is when the host's report timeout has passed.
	By time.Time `json:"by"`
	// Lost: its host died; the report, should its receiver's node not
	// give it, is "the message's node went down".
	Lost bool `json:"lost,omitempty"`
	// timer answers for the host at By (armAwaitLocked).
	timer *time.Timer
}

// maxAwaited bounds a session's sends awaiting a report in its record
// (the messaging handler bounds them across sessions): past it the
// newest is not kept, and its report, should its host die, times out
// at the client.
const maxAwaited = 256

// reportMargin is how long after the host's own report timeout the
// owner answers for it: the host's 408 comes first while it lives.
const reportMargin = 2 * time.Second

// newLife names one run of this gateway process.
func newLife() string {
	b := make([]byte, 9)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// awaitReport notes f, a send of s's client that this node's messaging
// handler takes: its report is owed.
func (s *Session) awaitReport(f *protocol.Frame) {
	if f.Control.Type != protocol.TypeRequest || f.Header.Action != protocol.ActionSend {
		return
	}
	corr := protocol.ClientCorrelation(f)
	if corr == "" {
		return
	}
	a := awaited{Corr: corr, Sub: f.Control.SubsessionID, Target: f.Header.Target, Node: s.g.ownerName(), Life: s.g.life,
		By: time.Now().Add(s.g.cfg.Messaging.ReportTimeout.D() + reportMargin)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.awaiting) >= maxAwaited {
		s.awaitFullUntil = a.By
		return
	}
	if s.awaiting == nil {
		s.awaiting = map[string]awaited{}
	}
	s.awaiting[corr] = s.armAwaitLocked(a)
}

// isSendReport reports whether f is a delivery report: an answer to a
// message's send.
func isSendReport(f *protocol.Frame) bool {
	return f.EffectivePackage() == protocol.PackageMessaging && f.Header.Action == protocol.ActionSend &&
		(f.Control.Type == protocol.TypeResponse || f.Control.Type == protocol.TypeError)
}

// reportedLocked forgets the send f reports on, a frame sent to s;
// s.mu is held.
func (s *Session) reportedLocked(f *protocol.Frame) {
	if len(s.awaiting) == 0 || !isSendReport(f) {
		return
	}
	if a, ok := s.awaiting[f.Control.CorrelationID]; ok {
		if a.timer != nil {
			a.timer.Stop()
		}
		delete(s.awaiting, f.Control.CorrelationID)
	}
	// A message an earlier owner left waiting (outbox.go) is done with.
	for k, e := range s.outbox {
		if e.Corr == f.Control.CorrelationID {
			delete(s.outbox, k)
		}
	}
}

// armAwaitLocked has the owner answer a by its time, and returns a with
// its timer; s.mu is held.
func (s *Session) armAwaitLocked(a awaited) awaited {
	corr := a.Corr
	reason := "no delivery report"
	if a.Lost {
		reason = "no delivery report: the message's node went down"
	}
	a.timer = time.AfterFunc(time.Until(a.By), func() { s.failAwaited(corr, reason) })
	return a
}

// awaitingSnapshotLocked returns the sends owed a report, for the
// record; s.mu is held.
func (s *Session) awaitingSnapshotLocked() []awaited {
	if len(s.awaiting) == 0 {
		return nil
	}
	out := make([]awaited, 0, len(s.awaiting))
	for _, a := range s.awaiting {
		out = append(out, a)
	}
	return out
}

// setOwed gives s, restored from r, what it owes its client's sends:
// their reports, the messages waiting for their receivers (outbox.go)
// and the reports that came first.
func (s *Session) setOwed(r *record) {
	s.setAwaiting(r.Awaiting)
	s.setOutbox(r.Outbox)
	s.mu.Lock()
	s.early = r.Early
	s.mu.Unlock()
}

// setAwaiting gives s, restored from its record, the sends owed a
// report. Nothing is armed yet: a copy restored for a takeover may be
// dropped (takeAwaiting, once s is live here, arms them).
func (s *Session) setAwaiting(as []awaited) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.awaiting = nil
	for _, a := range as {
		if s.awaiting == nil {
			s.awaiting = make(map[string]awaited, len(as))
		}
		s.awaiting[a.Corr] = a
	}
	if len(as) >= maxAwaited {
		// Its client's later sends may have gone unawaited: their
		// hosts' reports go through (hostReportUnawaitedLocked).
		s.awaitFullUntil = time.Now().Add(s.g.cfg.Messaging.ReportTimeout.D() + reportMargin)
	}
}

// takeAwaiting makes this node answer for the sends owed a report of s,
// restored from its record and now live here: those its host can no
// longer answer now, the others by their time.
func (s *Session) takeAwaiting() {
	s.mu.Lock()
	for corr, a := range s.awaiting {
		if a.timer == nil {
			s.awaiting[corr] = s.armAwaitLocked(a)
		}
	}
	s.mu.Unlock()
	s.failLostReports()
}

// failLostReports answers the sends owed a report whose host can no
// longer give it (a node that is down, or this node in an earlier life)
// once the receiver's node has had time to report to the session itself
// (reportdirect.go): within lostReportGrace, or their own time if that
// comes first.
func (s *Session) failLostReports() {
	g := s.g
	hosts := map[string]bool{}
	s.mu.Lock()
	for _, a := range s.awaiting {
		hosts[a.Node] = false
	}
	s.mu.Unlock()
	for node := range hosts {
		hosts[node] = node != g.ownerName() && g.node != nil && g.node.Down(node)
	}
	by := time.Now().Add(g.lostReportGrace())
	s.mu.Lock()
	defer s.mu.Unlock()
	for corr, a := range s.awaiting {
		if !hosts[a.Node] && !(a.Node == g.ownerName() && a.Life != g.life) || a.Lost {
			continue
		}
		if a.timer != nil {
			a.timer.Stop()
		}
		a.Lost = true
		a.By = earlier(a.By, by)
		s.awaiting[corr] = s.armAwaitLocked(a)
	}
}

// lostReportGrace is how long a send whose host died waits for its
// receiver's node to report its answer: that node keeps trying for
// holdFor, the sender's session being perhaps between nodes too.
// Alone, the receiver died with the host: none.
func (g *Gateway) lostReportGrace() time.Duration {
	if g.node == nil {
		return 0
	}
	return g.holdFor() + reportMargin
}

// reportAwaited sends the report of the send corr, still owed, made of
// its receiver's answer (typ, code, reason) by the receiver's node, its
// host dead (reportdirect.go); one no longer owed is dropped. It reports
// false when the session moved away: the report goes to its new owner.
func (s *Session) reportAwaited(corr string, typ protocol.Type, code int, reason string) bool {
	return s.answerAwaited(corr, typ, code, reason, "direct")
}

// answerAwaited sends the report of the send corr, still owed, and
// counts it as outcome (jsonrtc_cluster_requests_total{kind="report"});
// it reports false when the session moved away.
func (s *Session) answerAwaited(corr string, typ protocol.Type, code int, reason, outcome string) bool {
	s.mu.Lock()
	if s.movedTo != "" {
		s.mu.Unlock()
		return false
	}
	a, ok := s.awaiting[corr]
	if !ok && !s.ended && outcome == "direct" {
		s.keepEarlyLocked(earlyReport{Corr: corr, Type: typ, Code: code, Reason: reason, At: time.Now()})
	}
	if !ok || s.ended {
		s.mu.Unlock()
		return true
	}
	if a.timer != nil {
		a.timer.Stop()
	}
	delete(s.awaiting, corr) // answered once
	s.mu.Unlock()
	s.g.metrics.cluster.WithLabelValues("report", outcome).Inc()
	s.Send(s.reportFrame(corr, a.Sub, a.Target, typ, code, reason), false)
	// Noted once sent: this report is not one to drop.
	s.mu.Lock()
	s.answeredForLocked(corr, a.By)
	s.mu.Unlock()
	return true
}

// Reports answered twice. The owner answers a send from a report notice
// (a receiver's answer whose host is down, or that the host's handler no
// longer held), or with 408 past the grace. The host's handler may
// report the same send after it: the chaos test with node kills, which
// counts reports given twice, had a host stalled 13 s with the store
// handle one answer twice, once as a notice to the owner and once
// through its handler, and the client got two 200s. The owner keeps the
// sends it answered so until the host's report could still come (the
// send's By, past the host's report timeout), and drops a report for one
// of them. In memory only: a session that moves in between forgets
// them.

// maxAnsweredFor bounds a session's answeredFor, as maxAwaited its
// awaiting.
const maxAnsweredFor = maxAwaited

// answeredForLocked notes that the owner answered the send corr for its
// host, whose own report could come until by; s.mu is held.
func (s *Session) answeredForLocked(corr string, by time.Time) {
	now := time.Now()
	if len(s.answeredFor) >= maxAnsweredFor {
		for k, t := range s.answeredFor {
			if now.After(t) {
				delete(s.answeredFor, k)
			}
		}
		if len(s.answeredFor) >= maxAnsweredFor {
			return
		}
	}
	if s.answeredFor == nil {
		s.answeredFor = map[string]time.Time{}
	}
	s.answeredFor[corr] = by
}

// reportedTwiceLocked reports whether f, a frame for s's client, is a
// host's report on a send the owner answered for it already; s.mu is
// held.
func (s *Session) reportedTwiceLocked(f *protocol.Frame) bool {
	if len(s.answeredFor) == 0 || !isSendReport(f) {
		return false
	}
	by, ok := s.answeredFor[f.Control.CorrelationID]
	if !ok {
		return false
	}
	delete(s.answeredFor, f.Control.CorrelationID)
	return time.Now().Before(by)
}

// hostReportUnawaitedLocked reports whether f, a frame a host sends to
// s, is a delivery report for a send s does not await, and keeps it as
// an early report then; s.mu is held. A host's report whose delivery
// timed out is sent again (mayWaitAfter): its owner may have taken it,
// slow, or written it and died. Sent again, it found the send answered
// and reached the client twice. Not sent, it was lost: the owner that
// restored the session from a record written before the report still
// awaited it, and answered 408 once the host went down in turn (the
// chaos test with node kills). A send is awaited from its taking on,
// in the session's record, so a report for one not awaited went to the
// client already, or came before the send's record (its node died
// first, and the client sends it again as it resumes: answered at once
// from the report kept, answeredEarly). Past maxAwaited a send goes
// unawaited: reports go through while that may be.
func (s *Session) hostReportUnawaitedLocked(f *protocol.Frame) bool {
	corr := f.Control.CorrelationID
	if s.g.node == nil || corr == "" || !isSendReport(f) || time.Now().Before(s.awaitFullUntil) {
		return false
	}
	if _, ok := s.awaiting[corr]; ok {
		return false
	}
	r := reportOf(f, reportRoute{to: s.id, corr: corr})
	s.keepEarlyLocked(earlyReport{Corr: corr, Type: r.Type, Code: r.Code, Reason: r.Reason, At: time.Now()})
	return true
}

// reportFrame is the report of the send corr (of subsession sub, to
// target): typ, code and reason.
func (s *Session) reportFrame(corr, sub, target string, typ protocol.Type, code int, reason string) *protocol.Frame {
	if reason == "" {
		reason = protocol.Reason(code)
	}
	out := &protocol.Frame{
		Control: protocol.Control{Type: typ, Package: protocol.PackageMessaging, SubsessionID: sub, CorrelationID: corr},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: s.identity, Target: target, Reason: reason},
	}
	if typ == protocol.TypeError {
		out.Header.ErrorCode = code
	} else {
		out.Control.Type, out.Header.ResponseCode = protocol.TypeResponse, code
	}
	return out
}

// Reports before their sends. A send's receiver may answer, and its
// node report the answer to the sender's session (reportdirect.go),
// before that session has the send again: the send's host died before
// writing the sender's state that took it, so the client, its send not
// acknowledged, sends it again once it has resumed, a moment after the
// report came (the message itself reached the receiver: its relay was
// written first, or on the receiver's node). Dropped as owed to nobody,
// that report left the send, taken again, waiting for an answer the
// receiver had given already (its relay is taken once: relays.go), and
// the sender got 408 once that host died in turn, or at the report
// timeout: two thirds of the 408s the chaos test with node kills left.
// So a report for a send not awaited is kept a while (maxEarly a
// session, each holdFor, in the session's record: the client may resume
// on yet another node before it sends again), and a send it reports on
// is answered with it at once.

// earlyReport is a receiver's answer to a send its session did not
// await when it came.
type earlyReport struct {
	Corr   string        `json:"corr"`
	Type   protocol.Type `json:"type"`
	Code   int           `json:"code"`
	Reason string        `json:"reason,omitempty"`
	At     time.Time     `json:"at"`
}

// maxEarly bounds the early reports a session keeps; the oldest goes.
const maxEarly = 16

// keepEarlyLocked keeps r; s.mu is held.
func (s *Session) keepEarlyLocked(r earlyReport) {
	s.early = slices.DeleteFunc(s.early, func(e earlyReport) bool {
		return e.Corr == r.Corr || time.Since(e.At) > s.g.holdFor()
	})
	if len(s.early) >= maxEarly {
		s.early = slices.Delete(s.early, 0, 1)
	}
	s.early = append(s.early, r)
	s.markDirtyLocked()
}

// answeredEarly answers f, a send of s's client, with the report kept
// for it, if one came before it (its receiver answered it already);
// it reports whether it did.
func (s *Session) answeredEarly(f *protocol.Frame) bool {
	if f.Control.Type != protocol.TypeRequest || f.Header.Action != protocol.ActionSend {
		return false
	}
	corr := protocol.ClientCorrelation(f)
	s.mu.Lock()
	if len(s.early) == 0 || corr == "" {
		s.mu.Unlock()
		return false
	}
	k := slices.IndexFunc(s.early, func(e earlyReport) bool { return e.Corr == corr })
	if k < 0 {
		s.mu.Unlock()
		return false
	}
	r := s.early[k]
	s.early = slices.Delete(s.early, k, k+1)
	s.mu.Unlock()
	if time.Since(r.At) > s.g.holdFor() {
		return false
	}
	s.g.metrics.cluster.WithLabelValues("report", "early").Inc()
	s.Send(s.reportFrame(corr, f.Control.SubsessionID, f.Header.Target, r.Type, r.Code, r.Reason), false)
	return true
}

// failAwaited sends the error report of the send corr, still owed, as
// the messaging handler would at its report timeout (408). A session
// moved away leaves it to its new owner.
func (s *Session) failAwaited(corr, reason string) {
	s.answerAwaited(corr, protocol.TypeError, protocol.CodeRequestTimeout, reason, "lost")
}

// onNodeDownReports answers, for the sessions here, the sends whose
// host went down.
func (g *Gateway) onNodeDownReports() {
	for _, s := range g.liveSessions() {
		s.failLostReports()
	}
}
