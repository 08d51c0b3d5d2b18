package gateway

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Answers a message's host took and died before writing (docs/
// cluster.md "Delivery reports"). A receiver's answer to a message goes
// to the message's host, the node whose messaging handler makes the
// report; the host takes it at once (onInbound) and its handler queues
// the report in the sender's session, which its writer writes with its
// next round. A host dying in between lost the report, and the sender
// got 408 "the message's node went down" for a message delivered: the
// most common failure a node kill left in the chaos test (about 13 a
// kill).
//
// So the receiver's node keeps each answer its host took until the host
// has written what it did with it, and sends it to the sender's session
// itself (reportdirect.go) when the host dies first, or turns out to
// have restarted (a new life) without being seen down. Sending one
// again is safe: a report the host did write took the send off the
// sender's awaited sends in the same record, and a report for a send no
// longer awaited is dropped.
//
// How the receiver's node learns that the host wrote it costs no
// message of its own. The host numbers each answer it takes (a ticket,
// in its reply) and, with every reply, says up to which ticket all are
// written (its mark): a ticket is written once the writer's round whose
// cut follows the answer's dispatch is written (writeRound), the report
// then in the sender's record. Answers flow to a host as long as
// messages do, so the mark follows them; answers to a host that falls
// quiet are forgotten after holdFor, by which a dead host's lease has
// ended and its answers were sent on. A host that does not number its
// answers (an earlier version) gets none kept, as before.

// maxKeptAnswers bounds the answers kept for one host; past it the
// oldest goes (counted, logged): its host took it and most likely wrote
// it.
const maxKeptAnswers = 4096

// The outcomes of an answer kept for its host to write, in
// jsonrtc_cluster_requests_total (kind="kept_answer").
const (
	kindKeptAnswer = "kept_answer"
	answerResent   = "resent"  // its host died or restarted: reported directly
	answerExpired  = "expired" // unwritten past holdFor (its host quiet since)
	answerFull     = "full"    // pushed out by the maxKeptAnswers-th after it
)

// unknownTicket is the ticket of an answer whose host did not answer in
// time: it may have taken it, and no mark forgets it.
const unknownTicket = ^uint64(0)

// keptAnswer is an answer a host took, as the report it makes.
type keptAnswer struct {
	ticket uint64
	req    reportReq
	at     time.Time
}

// hostAnswers are the answers one host took and has not written.
type hostAnswers struct {
	life string
	list []keptAnswer
}

// keptAnswers are the answers kept, by host.
type keptAnswers struct {
	mu sync.Mutex
	by map[string]*hostAnswers
}

// keepAnswer keeps req, the report of an answer host (in its life) took
// as ticket, until host's mark passes it. A reply of a new life of host
// sends on what its earlier life took: that life ended unseen.
func (g *Gateway) keepAnswer(host, life string, ticket, mark uint64, req reportReq) {
	now := time.Now()
	k := &g.answers
	k.mu.Lock()
	if k.by == nil {
		k.by = map[string]*hostAnswers{}
	}
	h := k.by[host]
	if h == nil {
		h = &hostAnswers{life: life}
		k.by[host] = h
	}
	var lost []keptAnswer
	if life != "" && h.life != life {
		// An earlier life's, or, none known, the answers of forwards that
		// timed out (keepUnanswered): sent on, they are reported once
		// (a report for a send not awaited is dropped). Before, those
		// stayed kept past a new life, and were forgotten.
		lost, h.list = h.list, nil
		h.life = life
	}
	if life != "" {
		h.list = slices.DeleteFunc(h.list, func(a keptAnswer) bool { return a.ticket <= mark })
	}
	expired := 0
	for len(h.list) > 0 && now.Sub(h.list[0].at) > g.holdFor() {
		h.list = h.list[1:]
		expired++
	}
	full := 0
	for len(h.list) >= maxKeptAnswers {
		h.list = h.list[1:]
		full++
	}
	h.list = append(h.list, keptAnswer{ticket: ticket, req: req, at: now})
	k.mu.Unlock()
	if g.countTrimmed(kindKeptAnswer, answerExpired, answerFull, expired, full) {
		g.rlog.Warn("kept answers", "answers to messages their host took and did not write forgotten: too many", "host", host, "forgotten", full)
	}
	g.resendAnswers(host, lost, "restarted")
}

// keepUnanswered keeps req, the report of an answer whose forward to
// host timed out: host may have taken it, and it is sent on should the
// host die, or at once when it is down already. The forward waits
// clusterTimeout, and a host killed with it in flight was seen down
// (answersOfDead) before it gave up: kept after that, the answer was
// never sent on, and its sender got 408 "the message's node went down"
// for a message received (the chaos test with node kills).
func (g *Gateway) keepUnanswered(host string, req reportReq) {
	g.answers.mu.Lock()
	life := ""
	if h := g.answers.by[host]; h != nil {
		life = h.life
	}
	g.answers.mu.Unlock()
	g.keepAnswer(host, life, unknownTicket, 0, req)
	if g.node.Down(host) {
		g.answersOfDead(host)
	}
}

// answersOfDead sends on the answers host took and did not write: it is
// down.
func (g *Gateway) answersOfDead(host string) {
	k := &g.answers
	k.mu.Lock()
	var lost []keptAnswer
	if h := k.by[host]; h != nil {
		lost = h.list
		delete(k.by, host)
	}
	k.mu.Unlock()
	g.resendAnswers(host, lost, "down")
}

// resendAnswers reports each of lost, answers host took and may not have
// written, to its sender's session directly.
func (g *Gateway) resendAnswers(host string, lost []keptAnswer, why string) {
	if len(lost) == 0 {
		return
	}
	g.metrics.cluster.WithLabelValues(kindKeptAnswer, answerResent).Add(float64(len(lost)))
	g.log.Info("answers to messages a host took and may not have written reported to their senders", "host", host, "host_was", why, "answers", len(lost))
	for _, a := range lost {
		g.sendReport(a.req)
	}
}

// answerTickets number, on a host, the answers it takes for other nodes
// that ask (inboundReq.Ticket), and say up to which all are written.
type answerTickets struct {
	mu   sync.Mutex
	next uint64
	// open: tickets taken and not yet written, with when.
	open map[uint64]time.Time
	mark uint64
}

// issue numbers an answer taken.
func (t *answerTickets) issue() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	if t.open == nil {
		t.open = map[uint64]time.Time{}
	}
	t.open[t.next] = time.Now()
	return t.next
}

// written forgets tickets, their answers' effects written (or their
// answers not taken after all), and those open past bound (an answer
// that never reached its dispatch: a gateway shutting down); the mark
// is then the ticket before the oldest open.
func (t *answerTickets) written(tickets []uint64, bound time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range tickets {
		delete(t.open, n)
	}
	mark := t.next
	now := time.Now()
	for n, at := range t.open {
		if now.Sub(at) > bound {
			delete(t.open, n)
			continue
		}
		mark = min(mark, n-1)
	}
	t.mark = mark
}

// current returns the mark.
func (t *answerTickets) current() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mark
}

// ticketReply is onInbound's answer to a frame taken as ticket: the
// host's life, the ticket and the mark.
func (g *Gateway) ticketReply(ticket uint64) []byte {
	return []byte(inboundTaken + " " + g.life + " " + strconv.FormatUint(ticket, 10) + " " + strconv.FormatUint(g.tickets.current(), 10))
}

// parseTicket reads a ticketReply; ok is false for a plain inboundTaken.
func parseTicket(rep string) (life string, ticket, mark uint64, ok bool) {
	f := strings.Fields(rep)
	if len(f) != 4 || f[0] != inboundTaken {
		return "", 0, 0, false
	}
	var err1, err2 error
	ticket, err1 = strconv.ParseUint(f[2], 10, 64)
	mark, err2 = strconv.ParseUint(f[3], 10, 64)
	return f[1], ticket, mark, err1 == nil && err2 == nil
}
