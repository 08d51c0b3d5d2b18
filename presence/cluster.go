package presence

import (
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/subscription"
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
	// Watches are the session's subscriptions to web presentities: the
	// node that takes the session over makes them again, so that the
	// client need not.
	Watches []Watch `json:"watches,omitempty"`
}

// Watch is a subscription of a session, as another node makes it again.
type Watch struct {
	Subsession string    `json:"subsession"`
	Target     string    `json:"target"`
	Expires    time.Time `json:"expires"`
	// Upstream: a watch of a presentity the Upstream serves (SIP), made
	// again with a new SUBSCRIBE by the node that takes the session
	// over (docs/cluster.md "SIP subscriptions"); Ext are its start's
	// extension headers, for its routing, and Last the state the client
	// was told last.
	Upstream bool                      `json:"upstream,omitempty"`
	Ext      []protocol.Ext            `json:"ext,omitempty"`
	Last     *protocol.PresencePayload `json:"last,omitempty"`
}

// RemoteSession tells the Handler that session, a live session of
// identity, is served by another node in state r, or, with r nil, that
// it ended (or its node is gone and nobody resumed it). The identity's
// state is composed again and its watchers here told of a change.
func (h *Handler) RemoteSession(identity, session string, r *RemoteSession) {
	h.mu.Lock()
	defer h.unlock()
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
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	h.mu.Lock()
	defer h.unlock()
	e := h.ents[ep.Identity()]
	if e == nil {
		return
	}
	if _, ok := e.sessions[ep.ID()]; !ok {
		return
	}
	r := h.shareLocked(e, ep.ID())
	// Its watches are the new node's now (its share carries them): those
	// of the Upstream end here (SUBSCRIBE Expires: 0) without a word to
	// the client, as the new node makes them again.
	for _, s := range h.subs.Session(ep.ID()) {
		if stop := h.endLocked(s); stop != nil {
			stops = append(stops, stop)
		}
	}
	delete(e.sessions, ep.ID())
	delete(e.pubs, ep.ID())
	if _, ok := e.remote[ep.ID()]; !ok {
		e.remote[ep.ID()] = *r
	}
	h.changedLocked(e)
}

// adoptLocked takes over the publication of a session that another node
// served (a resume here of a session that moved, or whose node died):
// the state its user set goes on.
// Its watches are made again, silently (the client holds them already):
// of web presentities at once, of the Upstream's with a new
// subscription (adoptUpLocked).
func (h *Handler) adoptLocked(e *entity, ep endpoint.Endpoint) {
	r, ok := e.remote[ep.ID()]
	if !ok {
		return
	}
	delete(e.remote, ep.ID())
	if r.State != nil {
		e.pubs[ep.ID()] = publication{state: *r.State, at: r.At}
	}
	for _, w := range r.Watches {
		left := time.Until(w.Expires)
		key := subscription.Key{Session: ep.ID(), Subsession: w.Subsession}
		if left <= 0 {
			continue
		}
		if old, _ := h.subs.Get(key); old != nil {
			continue
		}
		if w.Upstream {
			h.adoptUpLocked(ep, key, w, left)
			continue
		}
		id, web, found := h.resolveLocked(w.Target)
		if !web || !found {
			continue
		}
		t := h.entityLocked(id)
		s := &sub{ep: ep, key: key, target: w.Target, expiry: left.Round(time.Second)}
		if len(t.watchers) >= h.cfg.MaxWatchers || !h.subs.Add(key, s, ep) {
			h.gcLocked(t)
			continue
		}
		s.ent = t
		t.watchers[s] = struct{}{}
		h.armLocked(s, left)
	}
}

// shareLocked is session's share in e's state, for the other nodes.
func (h *Handler) shareLocked(e *entity, session string) *RemoteSession {
	r := &RemoteSession{}
	if p, ok := e.pubs[session]; ok {
		st := p.state
		r.State, r.At = &st, p.at
	}
	for _, s := range h.subs.Session(session) {
		switch {
		case s.ended || s.pending:
			// A pending one is not the client's yet: its start is
			// answered by the node that made it, or not at all.
		case s.ent != nil:
			r.Watches = append(r.Watches, Watch{Subsession: s.key.Subsession, Target: s.target, Expires: s.until})
		default:
			r.Watches = append(r.Watches, Watch{Subsession: s.key.Subsession, Target: s.target, Expires: s.until,
				Upstream: true, Ext: s.ext, Last: s.lastUp})
		}
	}
	return r
}

// adoptUpLocked makes again w, a watch of an Upstream presentity that
// the session of ep held on another node, with left of its web-side
// expiry: a new SUBSCRIBE of this node's, once mu is released. The
// client holds the watch: it hears nothing of the new subscription
// but a state it has not seen, or the watch's end.
func (h *Handler) adoptUpLocked(ep endpoint.Endpoint, key subscription.Key, w Watch, left time.Duration) {
	if h.up == nil {
		return
	}
	s := &sub{ep: ep, key: key, target: w.Target, expiry: seconds(h.cfg.Expiry), ext: w.Ext, lastUp: w.Last, quiet: true}
	if !h.subs.Add(key, s, ep) {
		return
	}
	h.armLocked(s, left)
	h.resubs = append(h.resubs, s)
}

// exportLocked tells Options.Local of session's share now.
func (h *Handler) exportLocked(e *entity, session string) {
	if h.local != nil {
		h.local(e.id, session, h.shareLocked(e, session))
	}
}

// watchesChangedLocked exports the share of the session of ep, whose
// watches changed.
func (h *Handler) watchesChangedLocked(ep endpoint.Endpoint) {
	if e := h.ents[ep.Identity()]; e != nil {
		if _, live := e.sessions[ep.ID()]; live {
			h.exportLocked(e, ep.ID())
		}
	}
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
