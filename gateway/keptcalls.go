package gateway

import (
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Call frames delivered to a node that died before writing them (docs/
// cluster.md "Delivery across nodes"). A call's host relays its legs'
// frames (an answer, a candidate, a hang-up) to a session owned by
// another node straight into that session's window there; the owner
// writes the window with its writer's next round. An owner dying in
// between lost the frame, acknowledged to the client that sent it: a
// caller never heard the callee's answer, a callee never heard the
// hang-up, and the call hung on one side.
//
// Messages are kept by their host until the receiver answers them
// (keptmsgs.go): the answer proves them written. A call frame has no
// answer of its own, so the host keeps it until its owner says it is
// written, at no cost of a message of its own: the host asks the owner
// to number the frame it takes (a ticket, as a message's host numbers
// the answers it takes for the receivers' nodes, keptanswers.go), and
// every reply of the owner to a delivery says, with its life, up to
// which ticket all are written (its mark). A call frame is forgotten
// once a mark of the same life passes its ticket; it is sent again,
// like a message kept, when its owner dies first (its lease gone), when
// the session turns up on another node while it is kept (a resume
// there), and when the owner replies from a new life (a restart within
// a lease, never seen as a death). Sending one again is safe: it is
// relayed with its origin (its sender's frame, the call's stream), so
// one its first owner did write is taken once (relays.go), at the
// sequence it got then, or, older than the last relays a stream's mark
// keeps, recognised as taken without it (errRelayForgotten).
//
// A call's request (a re-offer, a transfer) is kept too. Its answer
// carries the correlation id its sequence made where it was taken, which
// a new owner numbering it anew changes: the call is told the new one
// as the request is sent again (call.Handler.Resend), or that it could
// not be delivered (its sender gets 480, and the call is free for
// another request). Before, such a request relayed to a node dying
// within a round was lost: its sender's request timed out, and every
// later request of the call was refused as glare. An owner that falls quiet leaves the last frames sent to it
// kept until holdFor, when they are forgotten (counted as expired): its
// lease has ended by then if it died. A frame is not sent again for its
// age alone, as a message is (resendStale): kept again under a new
// ticket, it would go again and again to an owner fallen quiet. An owner of an earlier version
// numbers nothing, and nothing sent to it is kept, as before.

// ticketOf is the ticket an owner gave a frame it took, in its life.
type ticketOf struct {
	life string
	n    uint64
}

// ownerMark is what the last reply of an owner said of its writes.
type ownerMark struct {
	life string
	mark uint64
}

// keepableCall reports whether the delivery of f (self-correlated),
// relaying the client frame o, is kept until its owner has written it:
// a call's frame, or a request its host relays on the call's stream.
func keepableCall(f *protocol.Frame, self bool, o endpoint.Origin) bool {
	return o.Session != "" && o.Sequence != 0 && f.EffectivePackage() == protocol.PackageCall &&
		(f.Control.Type != protocol.TypeRequest || self && o.Stream != "")
}

// keepableReport reports whether the delivery of f (self-correlated
// with self), relaying the client frame o, is a host's delivery report
// on a send (isSendReport), kept until its owner has written it as a
// call frame is. The sender's session moved to another node after its
// send (a resume there), whose owner took the report and died within a
// writer round: its record, restored on the next node, still awaited
// the report, which nobody sent again, and the sender got 408 (the chaos
// test with node kills). Sent again, one the owner did write is dropped
// there: its send is no longer awaited (hostReportUnawaitedLocked), or
// answered already (reportedTwiceLocked).
func keepableReport(f *protocol.Frame, self bool, o endpoint.Origin) bool {
	return !self && o.Session == "" && isSendReport(f)
}

// keptUntilWritten reports whether the delivery of f is numbered by its
// owner and kept until that owner has written it: a call's frame
// (keepableCall) or a host's delivery report (keepableReport).
func keptUntilWritten(f *protocol.Frame, self bool, o endpoint.Origin) bool {
	return keepableCall(f, self, o) || keepableReport(f, self, o)
}

// callRequest reports whether d, a call frame kept, is a request.
func (d *keptDelivery) callRequest() bool {
	return d.tk.n != 0 && d.self && d.f.Control.Type == protocol.TypeRequest
}

// writtenLocked reports whether the owner of the call frame d has
// written it; g.kept.mu is held.
func (k *keptDeliveries) writtenLocked(d *keptDelivery) bool {
	m, ok := k.marks[d.owner]
	return ok && m.life == d.tk.life && m.mark >= d.tk.n
}

// noteMark notes what owner's reply said of its writes: its life and
// mark. A new life sends again what was kept for its earlier ones.
func (g *Gateway) noteMark(owner, life string, mark uint64) {
	k := &g.kept
	k.mu.Lock()
	if k.marks == nil {
		k.marks = map[string]ownerMark{}
	}
	prev, seen := k.marks[owner]
	switch {
	case !seen || prev.life != life:
		k.marks[owner] = ownerMark{life: life, mark: mark}
	case mark > prev.mark:
		k.marks[owner] = ownerMark{life: life, mark: mark}
	}
	var ids []string
	if seen && prev.life != life {
		for id, q := range k.m {
			for i := range q {
				if q[i].owner == owner && q[i].tk.life != life {
					ids = append(ids, id)
					break
				}
			}
		}
	}
	k.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	// Not in the caller's goroutine: it may hold a call's lock, and a
	// resend takes the messaging handler's.
	g.goTracked(func() {
		g.log.Info("frames delivered to an earlier life of a node sent again", "node", owner, "sessions", len(ids))
		for _, id := range ids {
			g.resend(id, func(d *keptDelivery) bool { return d.owner == owner && d.tk.life != life })
		}
	})
}
