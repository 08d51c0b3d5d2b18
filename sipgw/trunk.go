package sipgw

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// This file sends requests outside a dialog through the trunk routing
// chose (docs/routing.md): to its first proxy not marked down, moving on
// to the next after a 503, a 408 or no answer (RFC 3263 section 4.3); and
// probes each proxy of a trunk with a health interval with OPTIONS
// (RFC 3261 section 11), skipping one that does not answer until it does.

// ErrTrunkDown is returned when every proxy of a request's trunk is
// marked down; the web side gets 503.
var ErrTrunkDown = errors.New("sipgw: every proxy of the trunk is down")

// Route says where a request outside a dialog goes and how it presents
// its sender.
type Route struct {
	// Trunk names one of [Options.Trunks]; "": sip.outbound_proxy.
	Trunk string
	// Sender sets From and the identity headers (identity.go).
	Sender routing.Sender
	// Headers are the routing section's header rules' (checked as
	// extension headers are); one replaces a client's header of its name.
	Headers []routing.Header
	// Transform is the header rules and to_web of the later requests
	// and responses of the dialog (routing.Decision.Transform).
	Transform *routing.Transform
}

// withRouteHeaders is hs, the client's extension headers, with r's
// header rules applied: a rule's header replaces the client's of the
// same name, so that a client cannot add a second one; a dropped one
// removes it.
func withRouteHeaders(hs []Header, r Route) []Header {
	if len(r.Headers) == 0 {
		return hs
	}
	out := make([]Header, 0, len(hs)+len(r.Headers))
	for _, h := range hs {
		replaced := false
		for _, rh := range r.Headers {
			if strings.EqualFold(h.Name, rh.Name) {
				replaced = true
			}
		}
		if !replaced {
			out = append(out, h)
		}
	}
	for _, rh := range r.Headers {
		if !rh.Drop && !rh.Param {
			out = append(out, Header{Name: rh.Name, Value: rh.Value})
		}
	}
	return out
}

// requestURI is to with the Request-URI parameters of r's header rules.
// Each value must be of the unreserved characters of RFC 3261 section
// 25.1 (alphanumerics and -_.!~*'()+), so that none can end the
// parameter, start another or a header.
func requestURI(to sip.Uri, r Route) (sip.Uri, error) {
	u := *to.Clone()
	for _, rh := range r.Headers {
		if !rh.Param {
			continue
		}
		if rh.Value == "" || len(rh.Value) > 64 || strings.Trim(rh.Value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()+") != "" {
			return u, invalid("Request-URI parameter %s: value %q", rh.Name, rh.Value)
		}
		if u.UriParams == nil {
			u.UriParams = sip.NewParams()
		}
		u.UriParams.Add(rh.Name, rh.Value)
	}
	return u, nil
}

// nextHop is one next hop: a Route header and the transport toward it. The
// zero nextHop (no route) sends to the Request-URI.
type nextHop struct {
	route     *sip.Uri
	transport string
}

type trunk struct {
	name    string
	cfg     routing.TrunkConfig
	proxies []*proxy
}

type proxy struct {
	nextHop
	uri  string  // as configured, for logs and status
	ping sip.Uri // the OPTIONS Request-URI
	down atomic.Bool
}

// ProxyStatus is one proxy of a trunk as the health checks see it.
type ProxyStatus struct {
	URI string
	Up  bool
}

// trunkSet is the trunks of one configuration, with the stop of their
// health checks. A reload ([UserAgent.SetTrunks]) swaps the whole set.
type trunkSet struct {
	m    map[string]*trunk
	stop chan struct{}
}

func (g *UserAgent) newTrunks(cfgs map[string]routing.TrunkConfig) (*trunkSet, error) {
	set := &trunkSet{m: map[string]*trunk{}, stop: make(chan struct{})}
	for name, tc := range cfgs {
		t := &trunk{name: name, cfg: tc}
		for _, p := range tc.Proxies {
			if err := routing.ValidateProxy(p); err != nil {
				return nil, fmt.Errorf("sipgw: trunk %s: %w", name, err)
			}
			u, err := parseServerURI(p)
			if err != nil {
				return nil, fmt.Errorf("sipgw: trunk %s: %w", name, err)
			}
			tp := g.cfg.Transport
			if v, ok := u.UriParams.Get("transport"); ok {
				tp = strings.ToLower(v)
			}
			ping := sip.Uri{Scheme: u.Scheme, Host: u.Host, Port: u.Port, UriParams: sip.NewParams()}
			route := ping
			route.UriParams = sip.NewParams()
			route.UriParams.Add("lr", "")
			if tp != "udp" {
				route.UriParams.Add("transport", tp)
				ping.UriParams.Add("transport", tp)
			}
			t.proxies = append(t.proxies, &proxy{nextHop: nextHop{route: &route, transport: tp}, uri: p, ping: ping})
		}
		set.m[name] = t
	}
	return set, nil
}

// SetTrunks replaces the trunks (a reload of routing.trunks): requests
// from now on use the new ones, requests already sent keep the proxies
// they had. A proxy kept under the same trunk keeps its health state;
// the old health checks stop and the new ones start at once.
func (g *UserAgent) SetTrunks(cfgs map[string]routing.TrunkConfig) error {
	set, err := g.newTrunks(cfgs)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	old := g.trunks.Load()
	for name, t := range set.m {
		if ot := old.m[name]; ot != nil {
			for _, p := range t.proxies {
				for _, op := range ot.proxies {
					if op.uri == p.uri {
						p.down.Store(op.down.Load())
					}
				}
			}
		}
	}
	g.trunks.Store(set)
	if g.ctx != nil {
		g.startHealthChecks(set)
	}
	close(old.stop)
	return nil
}

// hops returns the next hops to try for r, in order: the trunk's proxies
// that are up, or the outbound proxy (or none) without a trunk.
func (g *UserAgent) hops(r Route) ([]nextHop, error) {
	if r.Trunk == "" {
		return []nextHop{g.outboundHop()}, nil
	}
	t := g.trunks.Load().m[r.Trunk]
	if t == nil {
		return nil, fmt.Errorf("sipgw: no trunk %q", r.Trunk)
	}
	hs := make([]nextHop, 0, len(t.proxies))
	for _, p := range t.proxies {
		if !p.down.Load() {
			hs = append(hs, p.nextHop)
		}
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrTrunkDown, r.Trunk)
	}
	return hs, nil
}

// outboundHop is sip.outbound_proxy, or no Route when there is none.
func (g *UserAgent) outboundHop() nextHop { return nextHop{route: g.route, transport: g.cfg.Transport} }

// set routes req through h, replacing an earlier nextHop's Route.
func (h nextHop) set(req *sip.Request) {
	req.RemoveHeader("Route")
	// A clone keeps the destination its original resolved: forget it, so
	// that the new Route decides.
	req.SetDestination("")
	req.SetTransport(h.transport)
	if h.route != nil {
		req.AppendHeader(&sip.RouteHeader{Address: *h.route.Clone()})
	}
}

// failsOver reports whether the outcome of a request through one proxy
// sends it to the next: no answer, or an answer that says this proxy
// (not the callee) cannot serve it now (RFC 3263 section 4.3).
func failsOver(res *sip.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed)
	}
	return res != nil && (res.StatusCode == 503 || res.StatusCode == 408)
}

// TrunkStatus reports the proxies of a trunk, in order (nil when there is
// no such trunk).
func (g *UserAgent) TrunkStatus(name string) []ProxyStatus {
	t := g.trunks.Load().m[name]
	if t == nil {
		return nil
	}
	out := make([]ProxyStatus, len(t.proxies))
	for i, p := range t.proxies {
		out[i] = ProxyStatus{URI: p.uri, Up: !p.down.Load()}
	}
	return out
}

// startHealthChecks starts the OPTIONS probes of every trunk of set that
// has a health interval; they end with the user agent or the set.
func (g *UserAgent) startHealthChecks(set *trunkSet) {
	for _, t := range set.m {
		if t.cfg.HealthInterval <= 0 {
			continue
		}
		g.wg.Go(func() { g.probeLoop(t, set.stop) })
	}
}

func (g *UserAgent) probeLoop(t *trunk, stop <-chan struct{}) {
	tick := time.NewTicker(t.cfg.HealthInterval)
	defer tick.Stop()
	for {
		for _, p := range t.proxies {
			g.probe(t, p)
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		case <-g.ctx.Done():
			return
		}
	}
}

// probe sends one OPTIONS to p. Any final response but 503 means up
// (a proxy may well answer 404 or 483 to OPTIONS of no user); no answer
// or 503 means down.
func (g *UserAgent) probe(t *trunk, p *proxy) {
	ctx, cancel := context.WithTimeout(g.ctx, t.cfg.HealthTimeout)
	defer cancel()
	req := sip.NewRequest(sip.OPTIONS, *p.ping.Clone())
	req.SetTransport(p.transport)
	from := sip.Uri{Scheme: "sip", User: "jsonrtc", Host: g.cfg.Domain}
	fromH := &sip.FromHeader{Address: from, Params: sip.NewParams()}
	fromH.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(fromH)
	req.AppendHeader(&sip.ToHeader{Address: *p.ping.Clone(), Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("User-Agent", g.cfg.UserAgent))
	g.track()
	res, err := g.cli.Do(ctx, req)
	g.untrack()
	if g.ctx.Err() != nil {
		return
	}
	down := err != nil || res == nil || res.StatusCode == 503
	if was := p.down.Swap(down); was != down {
		// One line per change of state: bounded by the interval.
		if down {
			g.log.Warn("sipgw: trunk proxy down", "trunk", t.name, "proxy", p.uri, "err", err)
		} else {
			g.log.Info("sipgw: trunk proxy up", "trunk", t.name, "proxy", p.uri)
		}
	}
}
