package notification

import (
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/internal/subscription"
	"github.com/jsonrtc/jsonrtc/routing"
)

// A session's subscriptions move with it between the nodes of a cluster
// (docs/cluster.md "SIP subscriptions"): the gateway keeps them in the
// session's record (Options.Local), the node that takes the session
// over makes them again with a new SUBSCRIBE of its own (Adopt), and the
// node the session left ends its own (SessionMoved). The client sees
// nothing of it: its subsessions go on, and only a summary it has not
// seen is notified.

// exportLocked tells Options.Local of session's answered subscriptions.
func (h *Handler) exportLocked(session string) {
	if h.local == nil {
		return
	}
	var out []Saved
	for _, s := range h.subs.Session(session) {
		if !s.ended && !s.pending {
			out = append(out, Saved{Subsession: s.key.Subsession, Target: s.target, Ext: s.ext, Last: s.last})
		}
	}
	h.local(session, out)
}

// Adopt makes again subs, the subscriptions ep's session held on another
// node (or before a restart), each on its subsession, with a new
// Upstream subscription. A subsession that subscribes here already is
// left as it is; one that routing no longer sends to SIP ends with a
// shutdown to the client.
func (h *Handler) Adopt(ep endpoint.Endpoint, subs []Saved) {
	if h.up == nil || len(subs) == 0 {
		return
	}
	type made struct {
		s *sub
		d routing.Decision
	}
	var todo []made
	h.mu.Lock()
	for _, sv := range subs {
		key := subscription.Key{Session: ep.ID(), Subsession: sv.Subsession}
		if old, _ := h.subs.Get(key); old != nil || h.subs.SessionLen(ep.ID()) >= h.cfg.MaxSubscriptions {
			continue
		}
		s := &sub{ep: ep, key: key, target: sv.Target, ext: sv.Ext, last: sv.Last, quiet: true}
		d := endpoint.Route(ep, routing.Subscribe, sv.Target, sv.Ext)
		if d.Action == routing.ActionReject || d.Action == routing.ActionWeb {
			ep.Send(s.frames().Shutdown("subscription terminated"), true)
			continue
		}
		if !h.subs.Add(key, s, ep) {
			continue
		}
		todo = append(todo, made{s, d})
	}
	h.exportLocked(ep.ID())
	h.mu.Unlock()
	for _, m := range todo {
		h.subscribe(m.s, m.d)
	}
}

// SessionMoved ends the subscriptions of ep's session, which another
// node took over and makes again: upstream (SUBSCRIBE Expires: 0),
// without a word to the client, and without telling Options.Local.
func (h *Handler) SessionMoved(ep endpoint.Endpoint) {
	h.SessionEnded(ep)
}
