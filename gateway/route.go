package gateway

import (
	"errors"
	"reflect"
	"strings"

	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/templates"
)

// This file routes each session's calls, messages and subscriptions with
// the routing section's rules (docs/routing.md): Session implements
// endpoint.Router, which the handlers ask before they relay a request or
// send it to SIP.

// RouteBasis is what Route reads of s besides its identity and address
// (endpoint.BasisOf).
func (s *Session) RouteBasis() endpoint.RouteBasis {
	return endpoint.RouteBasis{Application: s.app, Guest: s.guest}
}

// Route decides where s's request of kind to target goes, and how the
// SIP side presents s (its application's sip_identity). With debug logs
// on it logs the decision and why each earlier rule did not match,
// within the rate-limited logger's budget (the client chooses targets).
func (s *Session) Route(kind routing.Kind, target string, ext []protocol.Ext) routing.Decision {
	g := s.g
	req := routing.Request{Kind: kind, Application: s.app, Identity: s.identity, Guest: s.guest,
		Target: target, WebLive: g.live(target)}
	if len(ext) > 0 {
		req.Ext = make(map[string]string, len(ext))
		for _, e := range ext {
			req.Ext[strings.ToLower(e.Name)] = e.Value
		}
	}
	s.mu.Lock()
	if s.conn != nil {
		req.Source = s.conn.addr
	}
	s.mu.Unlock()
	r := g.router.Load()
	var d routing.Decision
	if s.rlog.DebugEnabled() {
		d = r.Explain(req)
		s.rlog.Debug("route", "routed", "kind", kind.String(), "target", target, "decision", d.String(),
			"rule", d.Rule, "why", Explanation(d))
	} else {
		d = r.Decide(req)
	}
	g.metrics.routed.WithLabelValues(kind.String(), d.Rule, d.Action.String()).Inc()
	d.Sender = s.principal.Sender()
	return d
}

// orphanRoute is the route of the outgoing SIP call of sn whose web
// session is gone, under this node's configuration: what the session's
// Route decided, from what the call's record kept of it (no address, no
// extension headers: an adoption's has none either).
func (g *Gateway) orphanRoute(sn call.SIPSnapshot) routing.Decision {
	return g.router.Load().Decide(routing.Request{Kind: routing.Call, Application: sn.Route.Application,
		Identity: sn.Web.Identity, Guest: sn.Route.Guest, Target: sn.Target, WebLive: g.live(sn.Target)})
}

// live reports whether target names a web identity with a live session.
func (g *Gateway) live(target string) bool {
	id := target
	if scheme, rest, ok := strings.Cut(target, ":"); ok && (strings.EqualFold(scheme, "sip") || strings.EqualFold(scheme, "sips")) {
		id = rest
	}
	g.mu.Lock()
	local := len(g.byIdentity[id]) > 0
	g.mu.Unlock()
	// In a cluster, a session on another node is as live as one here.
	return local || (g.node != nil && len(g.liveEntries(g.node.Remote(id), false)) > 0)
}

// Explanation is a decision's steps in one line: "office: from.applications:
// ...; uk: ...; rest: matched".
func Explanation(d routing.Decision) string {
	var b strings.Builder
	for i, st := range d.Steps {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(st.Rule)
		if st.Matched {
			b.WriteString(": matched")
		} else {
			b.WriteString(": ")
			b.WriteString(st.Why)
		}
	}
	return b.String()
}

// Reload applies the routing section of cfg (a configuration file read
// again: jsonrtcd does on SIGHUP): rules, trunks, header rules and to_web
// change at once for every request decided, and every call arriving,
// from then on; requests already decided, and calls in progress, keep
// the configuration they started with (routing.Transform), and the
// proxies they were sent to. A cfg that does not validate changes
// nothing and the error names the key. The other sections need a
// restart: restart names those cfg changes (their top-level keys), so
// that the caller can log them as ignored until then.
func (g *Gateway) Reload(cfg Config) (restart []string, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.sipConfigured() != (g.sip != nil) {
		return nil, errors.New("gateway: adding or removing the sip section takes a restart")
	}
	r, err := routing.New(cfg.Routing)
	if err != nil {
		return nil, err
	}
	tmpl, err := templates.New(cfg.Templates)
	if err != nil {
		return nil, err
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.sip != nil {
		if err := g.sip.SetTrunks(r.Trunks()); err != nil {
			return nil, err
		}
		g.sip.SetRouting(r)
	}
	g.router.Store(r)
	g.tmpl.Store(tmpl)
	return changedSections(g.cfg, cfg), nil
}

// changedSections names the top-level keys of the sections other than
// routing and templates that differ between was and now.
func changedSections(was, now Config) []string {
	var out []string
	a, b := reflect.ValueOf(was), reflect.ValueOf(now)
	t := a.Type()
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if key == "routing" || key == "templates" || key == "-" || !t.Field(i).IsExported() {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			out = append(out, key)
		}
	}
	return out
}
