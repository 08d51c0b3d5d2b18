package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jsonrtc/jsonrtc/auth"
	"github.com/jsonrtc/jsonrtc/call"
	"github.com/jsonrtc/jsonrtc/interwork"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/messaging"
	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
	"github.com/prometheus/client_golang/prometheus"
)

// This file is the gateway's SIP wiring, and its only file besides
// config.go that names sipgw (internal/layering checks it). When the sip
// section is configured it builds and starts the SIP user agent, plugs it
// into the handlers as their upstream (package interwork) and into the
// call handler (call/sip.go: calls to non-web targets, INVITEs for
// registered identities), and hands the sessions' registrations to
// interwork.Registrations (docs/protocol.md §10.1, §4.8).

// sipSide is the SIP half of the Gateway, embedded in it.
type sipSide struct {
	sip  *sipgw.UserAgent         // nil without a sip section
	rtp  []*rtpengine.Client      // one per instance of media.rtpengine
	pool *rtpengine.Pool          // nil without media.rtpengine
	regs *interwork.Registrations // SIP registrations of sessions; registers nothing without SIP
	// onIncomingSIPCall is a test's hook (fortest.go).
	onIncomingSIPCall atomic.Pointer[func(identity string)]
}

// sipConfigured reports whether the sip section is in use.
func (c *Config) sipConfigured() bool {
	return c.SIP.Domain != "" || c.SIP.Listen != (sipgw.ListenConfig{})
}

// newSIP builds the SIP side when configured, and the registrations
// (which register nothing without it); startSIP starts it once the
// handlers exist.
func (g *Gateway) newSIP() error {
	if g.cfg.sipConfigured() {
		s, err := sipgw.New(g.cfg.SIP, &sipgw.Options{Logger: g.log.With("component", "sip"), Trunks: g.router.Load().Trunks(), Routing: g.router.Load(),
			Clustered: g.cfg.Cluster.Enabled()})
		if err != nil {
			return err
		}
		g.sip = s
	}
	g.regs = interwork.NewRegistrations(g.sip, &interwork.RegistrationOptions{
		Config: g.cfg.SIP, Limits: g.regLim, Peers: g.authPeers, Logger: g.log})
	return nil
}

// sipCalls connects the call handler to the SIP side, and to rtpengine
// when media.rtpengine is set. It runs in New, after the handlers exist
// and before the SIP side starts.
func (g *Gateway) sipCalls() error {
	if g.sip == nil {
		return nil
	}
	media, err := g.newMedia()
	if err != nil {
		return err
	}
	c := g.cfg.SIP
	domains := []string{c.Domain, c.TelDomain}
	for k, v := range c.IdentityDomains {
		domains = append(domains, k, v)
	}
	g.calls.UseSIP(g.sip, call.SIPOptions{Domains: domains, Headers: g.cfg.Calls.SIPHeaders, Media: media, MediaRoute: g.cfg.Media.RouteFor, Templates: g.tmpl.Load})
	g.sip.SetInfoPackages(func() []string { return g.tmpl.Load().InfoPackages() })
	g.sip.SetReceives(g.receives)         // templates.go
	g.sip.OnDeclared(g.onDeclaredMessage) // declaredin.go
	g.sip.OnIncomingCall(func(sc *sipgw.Call) {
		if f := g.onIncomingSIPCall.Load(); f != nil {
			(*f)(sc.Identity())
		}
		g.calls.IncomingSIP(sc)
	})
	return nil
}

// onDeclaredMessage takes a SIP peer's MESSAGE of a receiving messaging
// action to a web identity (sipgw.OnDeclared) to the web side
// (declaredin.go).
func (g *Gateway) onDeclaredMessage(ir *sipgw.InfoRequest) {
	g.askWeb(peerRequest{method: ir.Method, mark: ir.Mark, identity: ir.Identity, from: ir.From,
		frame:  func(a *templates.Action) *protocol.Frame { return a.IncomingFrame(ir.ContentType, ir.Body, ir.Headers) },
		answer: func(a *templates.Action, f *protocol.Frame) { ir.Respond(a.IncomingAnswer(f)) },
		refuse: func(code int, reason string) { ir.Respond(sipgw.Answer{Code: code, Reason: reason}) },
	})
}

// newMedia dials each rtpengine of media.rtpengine (UDP: nothing goes
// out) and starts their pool, which pings each once before it returns.
// An rtpengine that does not answer yet is logged, not fatal: new calls
// avoid it, and fail with 503 while none answers (docs/media.md,
// "Failures").
func (g *Gateway) newMedia() (*rtpengine.Adapter, error) {
	mc := g.cfg.Media
	if len(mc.RTPEngine) == 0 {
		return nil, nil
	}
	var insts []rtpengine.Instance
	for _, addr := range mc.RTPEngine {
		ctx, cancel := context.WithTimeout(context.Background(), mc.Timeout)
		c, err := rtpengine.Dial(ctx, addr, mc.Options())
		cancel()
		if err != nil {
			g.closeMedia()
			return nil, fmt.Errorf("media.rtpengine: %w", err)
		}
		g.rtp = append(g.rtp, c)
		insts = append(insts, rtpengine.Instance{Addr: addr, Ctl: c, Weight: mc.Weight(addr)})
	}
	po := &rtpengine.PoolOptions{Interval: mc.PingInterval, LostAfter: mc.LostAfter, FiguresInterval: mc.FiguresInterval, Logger: g.log.With("component", "rtpengine")}
	if g.wal {
		// A store that outlives the process: a ledger of the calls in
		// rtpengine lets the next life delete what a crash left there.
		node := "local"
		if g.node != nil {
			node = g.self()
		}
		g.ledger = newMediaLedger(g, node)
		po.Ledger = g.ledger
	}
	g.pool = rtpengine.NewPool(insts, po)
	a, err := rtpengine.NewPoolAdapter(g.pool, mc.Policy)
	if err != nil {
		g.closeMedia()
		return nil, err
	}
	g.pool.Start()
	g.mediaMetrics()
	if l := g.ledger; l != nil {
		g.goTracked(func() { l.run(g.ctx) })
		g.goTracked(func() { l.sweep(g.ctx, l.node()) })
		g.metrics.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_rtpengine_swept_total",
				Help: "Calls an earlier life of this node (a crash), or a peer whose lease expired, left in rtpengine and this node deleted (media ledger)."},
				func() float64 { return float64(l.swept.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_rtpengine_ledger_dropped_total",
				Help: "Calls not recorded in the media ledger because its write queue was full."},
				func() float64 { return float64(l.dropped.Load()) }),
		)
	}
	return a, nil
}

// mediaMetrics serves each instance's health, calls and ng counters,
// labelled by its address.
func (g *Gateway) mediaMetrics() {
	for i, c := range g.rtp {
		lbl := prometheus.Labels{"instance": g.cfg.Media.RTPEngine[i]}
		state := func() rtpengine.InstanceState { return g.pool.Instances()[i] }
		g.metrics.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jsonrtc_rtpengine_up", ConstLabels: lbl,
				Help: "1 while the rtpengine instance answers its pings (new calls avoid it otherwise)."},
				func() float64 {
					if state().Up {
						return 1
					}
					return 0
				}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jsonrtc_rtpengine_calls", ConstLabels: lbl,
				Help: "Anchored calls held by the rtpengine instance, from their first offer to their delete."},
				func() float64 { return float64(state().Calls) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_rtpengine_calls_lost_total", ConstLabels: lbl,
				Help: "Calls ended because the rtpengine instance holding their media failed media.lost_after pings in a row."},
				func() float64 { return float64(state().Lost) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_rtpengine_deletes_abandoned_total", ConstLabels: lbl,
				Help: "Deletes owed to the silent rtpengine instance beyond the 1024 kept, left to its own --timeout."},
				func() float64 { return float64(state().Abandoned) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_rtpengine_retransmits_total", ConstLabels: lbl,
				Help: "ng requests to rtpengine sent again, unanswered within media.retransmit."},
				func() float64 { return float64(c.Stats().Retransmits) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_rtpengine_timeouts_total", ConstLabels: lbl,
				Help: "ng requests to rtpengine that got no answer within media.timeout."},
				func() float64 { return float64(c.Stats().Timeouts) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jsonrtc_rtpengine_stray_total", ConstLabels: lbl,
				Help: "Datagrams from rtpengine no request waited for (late answers to copies, garbage)."},
				func() float64 { return float64(c.Stats().Stray) }),
		)
	}
}

// closeMedia stops the pool's pings and closes each ng client.
func (g *Gateway) closeMedia() {
	if g.pool != nil {
		g.pool.Close()
	}
	for _, c := range g.rtp {
		_ = c.Close()
	}
}

func (g *Gateway) startSIP() error {
	if g.sip == nil {
		return nil
	}
	g.sip.OnMessage(interwork.IncomingMessages(g.msgs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.sip.Start(ctx); err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	return nil
}

// closeSIP waits for the unregistrations of ended sessions, then ends
// every SIP subscription, publication and transaction left after the
// sessions ended, waiting for the peers as long as ctx allows. Each step
// gives up when ctx ends, and the next still runs: the SIP side is closed
// even when the unregistrations took too long.
func (g *Gateway) closeSIP(ctx context.Context) {
	_ = g.regs.Close(ctx)
	if g.sip != nil {
		if err := g.sip.Close(ctx); err != nil {
			g.log.Warn("closing the SIP side", "err", err)
		}
	}
}

// regSession is a session as the registrations see it.
type regSession struct{ s *Session }

func (r regSession) ID() string            { return r.s.id }
func (r regSession) Done() <-chan struct{} { return r.s.gone }

func (r regSession) Request(f *protocol.Frame) error {
	s := r.s
	s.mu.Lock()
	detached := s.ended || s.conn == nil
	s.mu.Unlock()
	if detached {
		return errDetached
	}
	_, err := s.Send(f, false)
	return err
}

func (r regSession) RegistrationLost(err error) {
	r.s.log.Warn("SIP registration lost; ending the session", "err", err)
	r.s.end(reasonRegistrationLost)
}

// authPeers lists the sessions of identity that may be asked a
// registrar's challenge: all but wsc.js ones (webrtc.oracle.com: wsc.js
// has no answer for a gateway's request).
func (g *Gateway) authPeers(identity string) []interwork.Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []interwork.Session
	for _, s := range g.byIdentity[identity] {
		if !s.oracle {
			out = append(out, regSession{s})
		}
	}
	return out
}

// SIPAddr returns the bound SIP address of a transport ("udp", "tcp",
// "tls"), or "" without SIP.
func (g *Gateway) SIPAddr(transport string) string {
	if g.sip == nil {
		return ""
	}
	return g.sip.Addr(transport)
}

// SIPStats reports the SIP side's live calls, dialogs, transactions and
// registrations (zero without SIP).
func (g *Gateway) SIPStats() sipgw.Stats {
	if g.sip == nil {
		return sipgw.Stats{}
	}
	return g.sip.Stats()
}

// TrunkStatus reports the proxies of a routing trunk and whether the
// health checks see each up (nil without SIP or such a trunk).
func (g *Gateway) TrunkStatus(name string) []sipgw.ProxyStatus {
	if g.sip == nil {
		return nil
	}
	return g.sip.TrunkStatus(name)
}

// SIPEventStats counts the live SIP subscriptions and publications, for
// leak checks.
func (g *Gateway) SIPEventStats() sipgw.EventStats {
	if g.sip == nil {
		return sipgw.EventStats{}
	}
	return g.sip.EventStats()
}

// The handlers' upstreams: nil interfaces without SIP.

func (g *Gateway) presenceUpstream() presence.Upstream {
	if g.sip == nil {
		return nil
	}
	return interwork.Presence(g.sip, &interwork.PresenceOptions{
		Expiry: time.Duration(g.cfg.Presence.Expiry) * time.Second, Logger: g.log, Route: g.publishRoute})
}

func (g *Gateway) notificationUpstream() notification.Upstream {
	if g.sip == nil {
		return nil
	}
	return interwork.Notification(g.sip)
}

func (g *Gateway) messagingUpstream() messaging.Upstream {
	if g.sip == nil {
		return nil
	}
	return interwork.Messaging(g.sip)
}

// sipRoute decides where the gateway's REGISTER or PUBLISH (kind) for
// identity goes, and which AOR it binds or states: the routing section's
// trunk (a rule for register or publish), else sip.outbound_proxy; the
// sip_identity of p's application (p nil: the identity's AOR). A rule's
// rejection is an error for the connect (REGISTER) or a PUBLISH left out.
func (g *Gateway) sipRoute(kind routing.Kind, identity string, p *auth.Principal, addr netip.Addr) (sipgw.Route, error) {
	req := routing.Request{Kind: kind, Identity: identity, Target: identity, Source: addr}
	if p != nil {
		req.Application, req.Guest = p.Application, p.Guest
	}
	d := g.router.Load().Decide(req)
	g.metrics.routed.WithLabelValues(kind.String(), d.Rule, d.Action.String()).Inc()
	if d.Action == routing.ActionReject {
		return sipgw.Route{}, &protocol.Error{Code: d.Code, Reason: d.Reason}
	}
	r := sipgw.Route{Sender: p.Sender(), Transform: d.Transform}
	if d.Action == routing.ActionSIP {
		r.Trunk = d.Trunk
	}
	return r, nil
}

// publishRoute is sipRoute for the PUBLISH of identity's presence, with
// the principal of one of its sessions (they share the identity, and so
// its sip_identity, unless two applications map it apart: the first
// session's wins).
func (g *Gateway) publishRoute(identity string) (sipgw.Route, error) {
	g.mu.Lock()
	sessions := slices.Clone(g.byIdentity[identity])
	g.mu.Unlock()
	// g.mu and a session's mu are never held together (gateway.go).
	var p *auth.Principal
	for _, s := range sessions {
		s.mu.Lock()
		p = s.principal
		s.mu.Unlock()
		if p != nil {
			break
		}
	}
	return g.sipRoute(routing.Publish, identity, p, netip.Addr{})
}
