package gateway

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

// kindDeadSession counts adoptSession in jsonrtc_cluster_requests_total.
const kindDeadSession = "dead_session"
