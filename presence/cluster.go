package presence

import (
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// RemoteSession is a session's share in its identity's state, as nodes
// of a cluster tell each other (docs/cluster.md, "Presence"): the
// gateway carries it between [Options.Local] on the session's node and
// [Handler.RemoteSession] on the others, so that this package knows no
// cluster.
type RemoteSession struct {
	// State is the session's publication; nil: it published nothing (the
	// identity is open through it).
	State *protocol.PresencePayload `json:"state,omitempty"`
	// At orders publications of an identity's sessions across nodes.
	At time.Time `json:"at"`
}

// RemoteSession tells the Handler that session, a live session of
// identity, is served by another node in state r, or, with r nil, that
// it ended (or its node is gone and nobody resumed it). The identity's
// state is composed again and its watchers here told of a change.
func (h *Handler) RemoteSession(identity, session string, r *RemoteSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.ents[identity]
	if r == nil {
		if e == nil {
			return
		}
		if _, ok := e.remote[session]; !ok {
			return
		}
		delete(e.remote, session)
		h.changedLocked(e)
		h.gcLocked(e)
		return
	}
	e = h.entityLocked(identity)
	e.remote[session] = *r
	h.changedLocked(e)
}

// SessionMoved tells the Handler that ep now lives on another node (a
// resume there took it over): it is no local session any more, but its
// state stays, as a remote one, until that node writes it.
func (h *Handler) SessionMoved(ep endpoint.Endpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.ents[ep.Identity()]
	if e == nil {
		return
	}
	if _, ok := e.sessions[ep.ID()]; !ok {
		return
	}
	r := RemoteSession{}
	if p, ok := e.pubs[ep.ID()]; ok {
		r.State, r.At = &p.state, p.at
	}
	delete(e.sessions, ep.ID())
	delete(e.pubs, ep.ID())
	if _, ok := e.remote[ep.ID()]; !ok {
		e.remote[ep.ID()] = r
	}
	h.changedLocked(e)
}

// adoptLocked takes over the publication of a session that another node
// served (a resume here of a session that moved, or whose node died):
// the state its user set goes on.
func (h *Handler) adoptLocked(e *entity, session string) {
	r, ok := e.remote[session]
	if !ok {
		return
	}
	delete(e.remote, session)
	if r.State != nil {
		e.pubs[session] = publication{state: *r.State, at: r.At}
	}
}

// exportLocked tells Options.Local of session's share now.
func (h *Handler) exportLocked(e *entity, session string) {
	if h.local == nil {
		return
	}
	r := &RemoteSession{}
	if p, ok := e.pubs[session]; ok {
		st := p.state
		r.State, r.At = &st, p.at
	}
	h.local(e.id, session, r)
}

// pubTimeLocked is a new publication's time: after every earlier one
// here, whatever the clock does.
func (h *Handler) pubTimeLocked() time.Time {
	t := time.Now().Round(0)
	if !t.After(h.lastPub) {
		t = h.lastPub.Add(time.Nanosecond)
	}
	h.lastPub = t
	return t
}
