package gateway

import "github.com/jsonrtc/jsonrtc/notification"

// A session's SIP subscriptions move with it (docs/cluster.md "SIP
// subscriptions"). Its watches of SIP presentities travel in its
// presence share (presencerepl.go, presence.Watch.Upstream); its
// message-summary subscriptions are in its record (record.Notes),
// written ahead as the rest of its state, so that the node that takes
// it over, after a drain, a kill or on a restart on the data directory,
// subscribes again with its own SUBSCRIBE and Contact when the client
// resumes there, on the same subsessions and without a word to the
// client, and the node it left ends its own (Expires: 0). Only the
// session's owner, the node whose resume took its record, subscribes
// again.

// notesLocal implements notification.Options.Local: the subscriptions
// go in the session's record. The end of a session leaves them: a
// shutdown keeps the record, with them, for the next run.
func (g *Gateway) notesLocal(session string, subs []notification.Saved) {
	s := g.lookup(session)
	if s == nil {
		return
	}
	s.mu.Lock()
	s.notes = subs
	s.markDirtyLocked()
	s.mu.Unlock()
}

// restoreNotes gives s, a session restored from its record (a restart,
// or a takeover), the subscriptions its record keeps, for its resume to
// make again (adoptNotes).
func (g *Gateway) restoreNotes(s *Session, subs []notification.Saved) {
	s.mu.Lock()
	s.notes = subs
	s.mu.Unlock()
}

// adoptNotes makes the subscriptions of s, a session restored from its
// record, again on this node's user agent, as its presence handler
// makes its watches again at the same moment (its resume).
func (g *Gateway) adoptNotes(s *Session) {
	s.mu.Lock()
	subs := s.notes
	s.mu.Unlock()
	g.notes.Adopt(s, subs)
}
