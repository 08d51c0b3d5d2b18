package gateway

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Messages waiting for their receivers, in their senders' records
// (docs/cluster.md "A dead node"). A client's message whose receiver's
// node is dead, silent or restarting waits on the sending node, in the
// queue of frames waiting for the receiving session (deadsession.go),
// while its sender's state, which took the send, is written and the
// send acknowledged. That queue is in the sending node's memory: a node
// dying while messages waited there lost them, acknowledged (their
// senders got 408 "the message's node went down" once it was seen dead:
// a quarter of the 408s the chaos test with node kills left, none of
// those messages received).
//
// So such a message is also put in its sender's session, and written
// with the state that took the send: the acknowledgement tells the
// client nothing the record does not hold. It leaves the session when
// its wait ends, delivered or given up. A node that takes the session
// (a resume, a restart on its store, a dead node's adoption) queues the
// messages it finds there for their receivers again, in order; sending
// one the first node did deliver is safe, its relay mark takes it once
// (relays.go), and the receiver's answer reaches the sender's session
// past the messaging handler that no longer holds it (reportdirect.go).
// A message whose send is no longer awaited (answered, or failed at
// its report timeout) is not sent again. A live owner that lets the
// session go (a resume elsewhere) goes on with the waits it holds, and
// the new owner sends none of them: sent from two nodes, a message
// could reach its receiver after the sender's next one, whose relay
// mark would then refuse it (480 for a message delivered). They stay
// in the record until their sends' reports reach the session.

// maxOutbox bounds the waiting messages a session's record holds; past
// it a message waits in memory only, as before.
const maxOutbox = 32

// outboxEntry is a client's message waiting for the session To.
type outboxEntry struct {
	To     string `json:"to"`
	Frame  []byte `json:"frame"`
	Seq    uint64 `json:"seq"`
	Stream string `json:"stream,omitempty"`
	Part   uint64 `json:"part,omitempty"`
	Corr   string `json:"corr,omitempty"`
	// Order keeps the entries in the order they were put.
	Order uint64 `json:"order"`
}

// outboxKey names a waiting message: its receiver and origin.
func outboxKey(to string, o endpoint.Origin) string {
	return to + "/" + strconv.FormatUint(o.Sequence, 10) + "/" + strconv.FormatUint(o.Part, 10) + "/" + o.Stream
}

// putOutbox writes f, a message of the client of the session o names
// (if it lives here), waiting for session to, into that session; it
// returns the entry's key ("" when not put).
func (g *Gateway) putOutbox(to string, f *protocol.Frame, o endpoint.Origin) string {
	if g.node == nil || !g.wal {
		return ""
	}
	s := g.lookup(o.Session)
	if s == nil {
		return ""
	}
	k := outboxKey(to, o)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.movedTo != "" {
		return ""
	}
	if _, ok := s.outbox[k]; !ok && len(s.outbox) >= maxOutbox {
		g.metrics.cluster.WithLabelValues(kindWaiting, "outbox_full").Inc()
		return ""
	}
	if s.outbox == nil {
		s.outbox = map[string]outboxEntry{}
	}
	s.outboxOrder++
	s.outbox[k] = outboxEntry{To: to, Frame: f.Marshal(), Seq: o.Sequence, Stream: o.Stream, Part: o.Part, Corr: o.Corr, Order: s.outboxOrder}
	s.markDirtyLocked()
	return k
}

// dropOutbox takes the entry k out of the session from, its wait over.
func (g *Gateway) dropOutbox(from, k string) {
	if k == "" {
		return
	}
	s := g.lookup(from)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.outbox[k]; ok {
		delete(s.outbox, k)
		s.markDirtyLocked()
	}
}

// outboxSnapshotLocked returns s's waiting messages for its record, in
// order; s.mu is held.
func (s *Session) outboxSnapshotLocked() []outboxEntry {
	if len(s.outbox) == 0 {
		return nil
	}
	out := make([]outboxEntry, 0, len(s.outbox))
	for _, e := range s.outbox {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b outboxEntry) int { return cmp.Compare(a.Order, b.Order) })
	return out
}

// setOutbox gives s, restored from its record, its waiting messages;
// nothing is sent yet (takeOutbox, once s is live here).
func (s *Session) setOutbox(es []outboxEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outbox = nil
	for _, e := range es {
		if s.outbox == nil {
			s.outbox = make(map[string]outboxEntry, len(es))
		}
		o := endpoint.Origin{Session: s.id, Sequence: e.Seq, Stream: e.Stream, Part: e.Part, Corr: e.Corr}
		s.outbox[outboxKey(e.To, o)] = e
		s.outboxOrder = max(s.outboxOrder, e.Order)
	}
}

// takeOutbox queues again, in order, the waiting messages of s,
// restored from its record and now live here, whose sends still await
// their reports; the others leave the record.
func (s *Session) takeOutbox() {
	g := s.g
	s.mu.Lock()
	es := s.outboxSnapshotLocked()
	var send []outboxEntry
	for _, e := range es {
		if _, owed := s.awaiting[e.Corr]; owed && e.Corr != "" {
			send = append(send, e)
			continue
		}
		delete(s.outbox, outboxKey(e.To, endpoint.Origin{Sequence: e.Seq, Stream: e.Stream, Part: e.Part}))
	}
	if len(send) != len(es) {
		s.markDirtyLocked()
	}
	s.mu.Unlock()
	for _, e := range send {
		f, err := protocol.Decode(e.Frame)
		if err != nil {
			continue
		}
		o := endpoint.Origin{Session: s.id, Sequence: e.Seq, Stream: e.Stream, Part: e.Part, Corr: e.Corr}
		g.waitOrphan(e.To, f, o, outboxKey(e.To, o))
	}
	if len(send) > 0 {
		g.metrics.cluster.WithLabelValues(kindWaiting, "outbox_resent").Add(float64(len(send)))
		s.log.Info("messages that waited for their receivers on the session's earlier node queued again", "messages", len(send))
	}
}

// waitOrphan queues f, a message of the session o names that an earlier
// node took (its messaging handler here knows nothing of it), for the
// session to: delivered as it is, the receiver's answer goes to the
// sender's session directly.
func (g *Gateway) waitOrphan(to string, f *protocol.Frame, o endpoint.Origin, k string) {
	w := &g.awaitingNode
	w.mu.Lock()
	q, running := w.m[to]
	for _, wf := range q {
		if wf.outbox == k && wf.o.Session == o.Session {
			w.mu.Unlock()
			return // waiting here already (this node took the send)
		}
	}
	if w.m == nil {
		w.m = map[string][]*waitingFrame{}
	}
	w.m[to] = append(q, &waitingFrame{f: f, self: true, o: o, until: time.Now().Add(g.holdFor()), orphan: true, outbox: k})
	w.n++
	w.mu.Unlock()
	if !running {
		g.metrics.cluster.WithLabelValues(kindWaiting, "waiting").Inc()
		if !g.goTracked(func() { g.deliverWaiting(to) }) {
			g.dropWaiting(to, "the gateway is shutting down")
		}
	}
}
