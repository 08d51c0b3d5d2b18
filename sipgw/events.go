package sipgw

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Event packages the gateway subscribes to ([UserAgent.Subscribe]).
const (
	// EventPresence is RFC 3856 presence (application/pidf+xml).
	EventPresence = "presence"
	// EventMessageSummary is RFC 3842 message waiting
	// (application/simple-message-summary).
	EventMessageSummary = "message-summary"
)

// eventState is the gateway's share of SUBSCRIBE/NOTIFY, PUBLISH and
// MESSAGE. Its zero value is ready; its lock is never held across I/O
// and is taken after g.mu when both are needed (never the reverse).
type eventState struct {
	mu      sync.Mutex
	closing bool
	subs    map[string]*Subscription // by Call-ID
	pubs    map[string]*publication  // by web identity
	onMsg   func(ctx context.Context, m *IncomingMessage) (int, string, []Header)
}

// eventRoutes registers the handlers of this file's requests. It takes
// NOTIFY over: a NOTIFY of no subscription of ours goes on to the call
// dialogs (REFER progress).
func (g *UserAgent) eventRoutes(wrap func(sipgo.RequestHandler) sipgo.RequestHandler) {
	g.srv.OnNotify(wrap(g.handleNotify))
	g.srv.OnMessage(wrap(g.handleMessage))
}

// EventStats counts live subscriptions and publications; tests assert
// both zero once everything ended.
type EventStats struct {
	Subscriptions int
	Publications  int
}

// EventStats returns the live counts.
func (g *UserAgent) EventStats() EventStats {
	g.ev.mu.Lock()
	defer g.ev.mu.Unlock()
	return EventStats{Subscriptions: len(g.ev.subs), Publications: len(g.ev.pubs)}
}

// closeEvents ends every subscription (SUBSCRIBE Expires: 0) and removes
// every publication (PUBLISH Expires: 0), waiting for them or for ctx.
// Called by Close before the transport goes.
func (g *UserAgent) closeEvents(ctx context.Context) {
	g.ev.mu.Lock()
	g.ev.closing = true
	subs := make([]*Subscription, 0, len(g.ev.subs))
	for _, s := range g.ev.subs {
		subs = append(subs, s)
	}
	pubs := make([]*publication, 0, len(g.ev.pubs))
	for _, p := range g.ev.pubs {
		pubs = append(pubs, p)
	}
	g.ev.mu.Unlock()
	for _, s := range subs {
		s.Stop()
	}
	for _, p := range pubs {
		p.stopOnce.Do(func() { close(p.stop) })
	}
	for _, s := range subs {
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	}
	for _, p := range pubs {
		select {
		case <-p.done:
		case <-ctx.Done():
		}
	}
}

// identityOf names the web identity an incoming request is for: the
// registration whose Contact it was sent to, or the user@domain of its
// Request-URI when that is one of our SIP domains (a proxy routing our
// users to us statically).
func (g *UserAgent) identityOf(req *sip.Request) (string, bool) {
	u := req.Recipient
	if r := g.lookupContact(u.User); r != nil {
		return r.identity, true
	}
	if u.User == "" || !validUser(u.User) {
		return "", false
	}
	host := strings.ToLower(u.Host)
	if strings.EqualFold(host, g.cfg.Domain) {
		return u.User + "@" + g.cfg.Domain, true
	}
	for web, sipDomain := range g.cfg.IdentityDomains {
		if strings.EqualFold(host, sipDomain) {
			return u.User + "@" + web, true
		}
	}
	return "", false
}

// requestFor builds a request outside any dialog from the AOR from to
// the URI to, routed through h.
func (g *UserAgent) requestFor(method sip.RequestMethod, from, to sip.Uri, fromTag, callID string, cseq uint32, h nextHop) *sip.Request {
	req := sip.NewRequest(method, *to.Clone())
	fromH := &sip.FromHeader{Address: *from.Clone(), Params: sip.NewParams()}
	fromH.Params.Add("tag", fromTag)
	req.AppendHeader(fromH)
	req.AppendHeader(&sip.ToHeader{Address: *to.Clone(), Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	h.set(req)
	req.AppendHeader(sip.NewHeader("User-Agent", g.cfg.UserAgent))
	return req
}

// checkHeaders validates extension headers from a web frame.
func checkHeaders(hs []Header) error {
	for _, h := range hs {
		if err := ValidateHeader(h); err != nil {
			return err
		}
	}
	return nil
}

// do sends the request build makes and returns its final response. A
// digest challenge is answered once, with the identity's gateway-held
// credentials (config credentials) when there are some; build is called
// again for the retry and must number it anew.
func (g *UserAgent) do(ctx context.Context, identity string, build func() *sip.Request) (*sip.Response, error) {
	req := build()
	for attempt := 0; ; attempt++ {
		g.track()
		res, err := g.cli.Do(ctx, req)
		g.untrack()
		if err != nil {
			return nil, err
		}
		if res == nil {
			// sipgo ends a transaction that its side's closing cut short
			// with neither a response nor an error.
			return nil, fmt.Errorf("sipgw: %s: %w", req.Method, ErrClosed)
		}
		if (res.StatusCode != 401 && res.StatusCode != 407) || attempt > 0 {
			return res, nil
		}
		cr, ok := g.cfg.Credentials[identity]
		if !ok {
			return res, nil
		}
		ch, err := parseChallenge(res, string(req.Method), req.Recipient.String())
		if err != nil {
			return res, nil
		}
		user := cr.Username
		if user == "" {
			if from := req.From(); from != nil {
				user = from.Address.User
			}
		}
		next := build()
		if err := applyAuth(next, ch, Authorization{Username: user, Realm: cr.Realm, HA1: cr.HA1, Password: cr.Password}); err != nil {
			return res, nil
		}
		req = next
	}
}
