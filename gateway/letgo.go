package gateway

import "time"

// Sessions let go in vain. A node asked to let a session go for a
// resume elsewhere (onTakeover) writes its last state, drops the session
// from its tables and answers; the asker then takes the record over. An
// asker that gave up first (its budget spent while this node was slow:
// a store electing a leader after a node's death) never takes it: the
// record still names this node, and no node has the session until its
// client resumes again, somewhere, a moment later. A frame for it
// meanwhile found no session here where the record pointed, and was
// taken for one to a session that had ended: a message got 480 at once
// (the chaos test with node kills: two in a run, 70 ms before the
// client's resume on a third node). The same holds on the asker when
// its own takeover fails after the owner let go (the record not read
// again, or not taken, within the resume's budget): the owner names the
// asker, which has no session (resumeStored notes it too). The session
// lives on in its record,
// so such a frame does what it does for a session whose client has not
// resumed yet: a message waits for the resume, a request is tried again
// within its bound (errMoved).

// maxLetGo is the size past which noteLetGoLocked sweeps out the
// entries older than holdFor.
const maxLetGo = 1024

// noteLetGoLocked notes that session id was let go to a takeover just
// now, by this node or for a resume here that failed; g.mu is held. The note goes when the session is back in the
// tables here (add), or holdFor after: frames wait no longer than that.
func (g *Gateway) noteLetGoLocked(id string) {
	now := time.Now()
	if len(g.letGo) >= maxLetGo {
		for k, at := range g.letGo {
			if now.Sub(at) > g.holdFor() {
				delete(g.letGo, k)
			}
		}
	}
	if g.letGo == nil {
		g.letGo = map[string]time.Time{}
	}
	g.letGo[id] = now
}

// letGoLately reports whether session id was let go to a takeover that
// did not land, within holdFor (noteLetGoLocked): a session not in the
// tables where the record or its owner points is then on its way.
func (g *Gateway) letGoLately(id string) bool {
	g.mu.Lock()
	at, ok := g.letGo[id]
	g.mu.Unlock()
	return ok && time.Since(at) < g.holdFor()
}
