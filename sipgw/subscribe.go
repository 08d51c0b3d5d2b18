package sipgw

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// SubscribeOptions describe a subscription (RFC 6665) the gateway makes
// as the subscriber, for a web identity.
type SubscribeOptions struct {
	// Identity is the web identity subscribing (the From, via AOR).
	Identity string
	// Target is the resource: any form ParseTarget takes.
	Target string
	// Event is the event package: EventPresence, EventMessageSummary.
	Event string
	// Accept is the body type asked for (Accept header), e.g.
	// application/pidf+xml. Empty: none sent.
	Accept string
	// Expiry is the lifetime asked for; the notifier's 2xx decides.
	// Default one hour.
	Expiry time.Duration
	// Headers are extension headers, each checked with ValidateHeader.
	Headers []Header
	// Route is the trunk and the presentation of the subscriber.
	Route Route
}

// SubscriptionEvents receive what happens to one subscription. They are
// called from the gateway's goroutines, NOTIFYs possibly before the
// 2xx: Accepted or Rejected once, then Notify any number of times, and
// Terminated at most once. None is called after the subscription's
// goroutine ended, except that a stopped subscription's last NOTIFY may
// still arrive.
type SubscriptionEvents interface {
	// Accepted: a 2xx to the initial SUBSCRIBE. headers are the
	// extension headers the route's to_web rules made of it (SUBSCRIBE,
	// on responses), as for Rejected and Notify (NOTIFY, on requests).
	Accepted(headers []Header)
	// Rejected: a failure response, or 408 (no headers) when none came.
	Rejected(code int, reason string, headers []Header)
	// Notify checks each NOTIFY body (contentType "" and nil body when
	// it has none) and returns what to do with it, which runs once the
	// NOTIFY has been answered 200: whoever learns of the new state (a
	// web client that then unsubscribes, say) acts after the notifier
	// has its answer. An error answers the NOTIFY 400 with the error's
	// text; the subscription goes on untouched.
	Notify(contentType string, body []byte, headers []Header) (deliver func(), err error)
	// Terminated: the notifier ended the subscription (Subscription-State:
	// terminated) or a refresh failed.
	Terminated(reason string)
}

// Subscription is one SUBSCRIBE dialog, refreshed before it expires until
// Stop. Its goroutine is owned by the UserAgent.
type Subscription struct {
	g       *UserAgent
	o       SubscribeOptions
	ev      SubscriptionEvents
	local   sip.Uri
	remote  sip.Uri
	ruri    sip.Uri // remote with the routing rules' parameters
	snd     sender
	hops    []nextHop // the initial SUBSCRIBE's, in failover order
	hop     nextHop   // the one that answered, for refreshes outside a route set
	callID  string
	fromTag string
	contact sip.ContactHeader

	stop     chan struct{}
	stopOnce sync.Once
	term     chan struct{} // closed by a terminating NOTIFY
	termOnce sync.Once
	done     chan struct{}

	nmu        sync.Mutex // serialises NOTIFY handling
	lastNotify uint32     // CSeq of the last NOTIFY handled (nmu)

	mu          sync.Mutex // guards below
	cseq        uint32
	toTag       string
	routes      []string
	target      sip.Uri // remote target, once established
	established bool
}

// Subscribe starts a subscription and returns at once; its outcome goes
// to ev. Invalid options fail with ErrInvalidInput, a closed gateway
// with ErrClosed.
func (g *UserAgent) Subscribe(o SubscribeOptions, ev SubscriptionEvents) (*Subscription, error) {
	if g.ctx == nil {
		return nil, ErrClosed
	}
	o.Headers = withRouteHeaders(o.Headers, o.Route)
	snd, err := g.senderFor(o.Identity, o.Route.Sender)
	if err != nil {
		return nil, err
	}
	local := snd.from
	remote, err := g.ParseTarget(o.Target)
	if err != nil {
		return nil, err
	}
	hops, err := g.hops(o.Route)
	if err != nil {
		return nil, err
	}
	ruri, err := requestURI(remote, o.Route)
	if err != nil {
		return nil, err
	}
	if o.Event == "" || strings.ContainsAny(o.Event, " ;,\t") || hasCtl(o.Event) || hasCtl(o.Accept) || strings.ContainsAny(o.Accept, "\r\n") {
		return nil, invalid("event %q or accept %q", o.Event, o.Accept)
	}
	if err := checkHeaders(o.Headers); err != nil {
		return nil, err
	}
	if o.Expiry <= 0 {
		o.Expiry = time.Hour
	}
	s := &Subscription{
		g: g, o: o, ev: ev, local: local, remote: remote, ruri: ruri, snd: snd, hops: hops, hop: hops[0],
		callID: randUUID(), fromTag: sip.GenerateTagN(16),
		contact: g.contactHeader("s" + randHex(6)),
		stop:    make(chan struct{}), term: make(chan struct{}), done: make(chan struct{}),
	}
	g.mu.Lock()
	closed := g.closed
	g.ev.mu.Lock()
	if closed || g.ev.closing {
		g.ev.mu.Unlock()
		g.mu.Unlock()
		return nil, ErrClosed
	}
	if g.ev.subs == nil {
		g.ev.subs = map[string]*Subscription{}
	}
	g.ev.subs[s.callID] = s
	g.wg.Go(s.run)
	g.ev.mu.Unlock()
	g.mu.Unlock()
	return s, nil
}

// Stop ends the subscription (SUBSCRIBE Expires: 0 when it is in place)
// without waiting. It is safe to call more than once, and after the
// subscription ended by itself.
func (s *Subscription) Stop() { s.stopOnce.Do(func() { close(s.stop) }) }

// Done is closed when the subscription's goroutine has ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

func (s *Subscription) run() {
	g := s.g
	defer close(s.done)
	defer func() {
		g.ev.mu.Lock()
		if g.ev.subs[s.callID] == s {
			delete(g.ev.subs, s.callID)
		}
		g.ev.mu.Unlock()
	}()
	// The initial SUBSCRIBE is not cut short by Stop: a subscription the
	// notifier accepted meanwhile must be ended properly.
	granted, res, err := s.send(s.o.Expiry)
	for len(s.hops) > 1 && g.ctx.Err() == nil && failsOver(res, err) {
		s.hops = s.hops[1:]
		s.mu.Lock()
		s.hop = s.hops[0]
		s.mu.Unlock()
		code, _ := failure(res, err)
		g.rlog.Info("subscribe failover", "sipgw: SUBSCRIBE failed over to the next proxy", "trunk", s.o.Route.Trunk, "code", code)
		granted, res, err = s.send(s.o.Expiry)
	}
	if err != nil || !res.IsSuccess() {
		code, reason := failure(res, err)
		g.rlog.Info("subscribe refused", "sipgw: subscription refused", "event", s.o.Event, "identity", s.o.Identity, "target", s.o.Target, "code", code)
		var hs []Header
		if err == nil {
			hs = webHeaders(s.o.Route.Transform, routing.SubscribeMethod, true, res)
		}
		s.ev.Rejected(code, reason, hs)
		return
	}
	s.ev.Accepted(webHeaders(s.o.Route.Transform, routing.SubscribeMethod, true, res))
	g.log.Debug("sipgw: subscribed", "event", s.o.Event, "identity", s.o.Identity, "target", s.o.Target, "expires", granted)
	for {
		select {
		case <-s.stop:
			s.unsubscribe()
			return
		default:
		}
		if granted <= 0 {
			s.ev.Terminated("the notifier granted no time")
			return
		}
		t := time.NewTimer(max(granted*4/5, 500*time.Millisecond))
		select {
		case <-t.C:
			var res *sip.Response
			var err error
			granted, res, err = s.send(s.o.Expiry)
			if failsOver(res, err) && g.ctx.Err() == nil && s.refreshHop() {
				code, _ := failure(res, err)
				g.rlog.Info("subscribe failover", "sipgw: SUBSCRIBE refresh failed over to the next proxy", "trunk", s.o.Route.Trunk, "code", code)
				granted, res, err = s.send(s.o.Expiry)
			}
			if err != nil || !res.IsSuccess() {
				code, _ := failure(res, err)
				g.rlog.Info("subscribe refresh", "sipgw: subscription refresh failed", "event", s.o.Event, "identity", s.o.Identity, "code", code)
				s.ev.Terminated("refresh failed: " + strconv.Itoa(code))
				return
			}
		case <-s.stop:
			t.Stop()
			s.unsubscribe()
			return
		case <-s.term:
			t.Stop()
			return
		case <-g.ctx.Done():
			t.Stop()
			return
		}
	}
}

// refreshHop moves the refreshes to the next proxy of the trunk that is
// up, after the one they went through failed (503, 408, no answer), and
// reports whether there is one. Only for a dialog without a route set:
// the proxy is then just the next hop toward the notifier's Contact. A
// dialog whose 2xx recorded a route must follow it (RFC 3261 section
// 12.2.1.1): no other proxy can be put in its path, and its failed
// refresh ends the subscription (docs/routing.md, Trunks).
func (s *Subscription) refreshHop() bool {
	hops, err := s.g.hops(s.o.Route)
	if err != nil || s.o.Route.Trunk == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.routes) > 0 {
		return false
	}
	for i, h := range hops {
		if h.route != nil && s.hop.route != nil && h.route.String() == s.hop.route.String() {
			if i+1 < len(hops) {
				s.hop = hops[i+1]
				return true
			}
			return false
		}
	}
	// The proxy that answered is down by now (health checks): the
	// first one up.
	if s.hop.route != nil && hops[0].route != nil && hops[0].route.String() != s.hop.route.String() {
		s.hop = hops[0]
		return true
	}
	return false
}

// unsubscribe sends SUBSCRIBE Expires: 0 and waits briefly for the
// notifier's final NOTIFY, so that it is answered 200 rather than 481.
func (s *Subscription) unsubscribe() {
	select {
	case <-s.term:
		return // the notifier ended it already
	default:
	}
	_, res, err := s.send(0)
	if err != nil || !res.IsSuccess() {
		return
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-s.term:
	case <-t.C:
	case <-s.g.ctx.Done():
	}
}

// failure turns a failed transaction into a SIP code and reason.
func failure(res *sip.Response, err error) (int, string) {
	if err != nil {
		code := ResponseCode(err)
		if errors.Is(err, context.DeadlineExceeded) {
			code = 408
		}
		return code, err.Error()
	}
	return res.StatusCode, res.Reason
}

// send does one SUBSCRIBE (initial, refresh, or removal with expiry 0)
// and returns the granted expiry.
func (s *Subscription) send(expiry time.Duration) (time.Duration, *sip.Response, error) {
	ctx, cancel := context.WithTimeout(s.g.ctx, sip.Timer_F)
	defer cancel()
	res, err := s.g.do(ctx, s.o.Identity, func() *sip.Request { return s.request(expiry) })
	if err != nil || !res.IsSuccess() {
		return 0, res, err
	}
	s.mu.Lock()
	if !s.established {
		s.established = true
		if to := res.To(); to != nil {
			s.toTag, _ = to.Params.Get("tag")
		}
		if ct := res.Contact(); ct != nil {
			s.target = *ct.Address.Clone()
		} else {
			s.target = *s.remote.Clone()
		}
		rrs := res.GetHeaders("Record-Route")
		for i := len(rrs) - 1; i >= 0; i-- {
			s.routes = append(s.routes, rrs[i].Value())
		}
	}
	s.mu.Unlock()
	granted := expiry
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			granted = min(time.Duration(n)*time.Second, expiry)
		}
	}
	return granted, res, nil
}

// request builds the next SUBSCRIBE: out of dialog until a 2xx
// established it, then within it.
func (s *Subscription) request(expiry time.Duration) *sip.Request {
	g := s.g
	s.mu.Lock()
	s.cseq++
	cseq, established, toTag, target, h := s.cseq, s.established, s.toTag, s.target, s.hop
	routes := append([]string(nil), s.routes...)
	s.mu.Unlock()
	var req *sip.Request
	if !established {
		req = g.requestFor(sip.SUBSCRIBE, s.local, s.remote, s.fromTag, s.callID, cseq, h)
		req.Recipient = *s.ruri.Clone()
	} else {
		req = sip.NewRequest(sip.SUBSCRIBE, *target.Clone())
		req.SetTransport(g.cfg.Transport)
		from := &sip.FromHeader{Address: *s.local.Clone(), Params: sip.NewParams()}
		from.Params.Add("tag", s.fromTag)
		req.AppendHeader(from)
		to := &sip.ToHeader{Address: *s.remote.Clone(), Params: sip.NewParams()}
		if toTag != "" {
			to.Params.Add("tag", toTag)
		}
		req.AppendHeader(to)
		cid := sip.CallIDHeader(s.callID)
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.SUBSCRIBE})
		if len(routes) == 0 {
			h.set(req)
		} else {
			req.SetTransport(g.cfg.Transport)
		}
		for _, r := range routes {
			req.AppendHeader(sip.NewHeader("Route", r))
		}
		req.AppendHeader(sip.NewHeader("User-Agent", g.cfg.UserAgent))
	}
	s.snd.present(req)
	ct := s.contact
	req.AppendHeader(&ct)
	req.AppendHeader(sip.NewHeader("Event", s.o.Event))
	if s.o.Accept != "" {
		req.AppendHeader(sip.NewHeader("Accept", s.o.Accept))
	}
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expiry/time.Second))))
	for _, h := range s.o.Headers {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	return req
}

// findSub returns the subscription a NOTIFY belongs to: same Call-ID,
// and its To tag is our From tag.
func (g *UserAgent) findSub(req *sip.Request) *Subscription {
	cid := req.CallID()
	to := req.To()
	if cid == nil || to == nil {
		return nil
	}
	tag, _ := to.Params.Get("tag")
	g.ev.mu.Lock()
	s := g.ev.subs[cid.Value()]
	g.ev.mu.Unlock()
	if s == nil || s.fromTag != tag {
		return nil
	}
	return s
}

func (g *UserAgent) handleNotify(req *sip.Request, tx sip.ServerTransaction) {
	if s := g.findSub(req); s != nil {
		s.handleNotify(req, tx)
		return
	}
	g.inDialog(req, tx)
}

// handleNotify applies RFC 6665 section 4.1.3 to a NOTIFY of s.
func (s *Subscription) handleNotify(req *sip.Request, tx sip.ServerTransaction) {
	g := s.g
	ev := ""
	if h := req.GetHeader("Event"); h != nil {
		ev, _, _ = strings.Cut(h.Value(), ";")
	}
	if !strings.EqualFold(strings.TrimSpace(ev), s.o.Event) {
		s.respond(tx, req, 489, "Bad Event")
		return
	}
	h := req.GetHeader("Subscription-State")
	if h == nil {
		s.respond(tx, req, 400, "Missing Subscription-State")
		return
	}
	state, params, _ := strings.Cut(h.Value(), ";")
	state = strings.ToLower(strings.TrimSpace(state))
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if cs := req.CSeq(); cs != nil {
		if s.lastNotify != 0 && cs.SeqNo <= s.lastNotify {
			// A retransmission that outran its answer, or a stale one:
			// its state is not newer than what we have.
			s.respond(tx, req, 200, "OK")
			return
		}
		s.lastNotify = cs.SeqNo
	}
	var ct string
	if c := req.ContentType(); c != nil {
		ct = strings.TrimSpace(c.Value())
	}
	body := req.Body()
	hs := webHeaders(s.o.Route.Transform, routing.Notify, false, req)
	if state == "terminated" {
		s.respond(tx, req, 200, "OK")
		if len(body) > 0 {
			deliver, err := s.ev.Notify(ct, body, hs)
			if err != nil {
				g.rlog.Info("notify body", "sipgw: bad final NOTIFY body", "event", s.o.Event, "err", err)
			} else if deliver != nil {
				deliver()
			}
		}
		reason := "terminated"
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "reason") {
				reason = "terminated: " + v
			}
		}
		select {
		case <-s.stop:
		default:
			s.ev.Terminated(reason)
		}
		s.termOnce.Do(func() { close(s.term) })
		return
	}
	if len(body) == 0 {
		ct = ""
	}
	deliver, err := s.ev.Notify(ct, body, hs)
	if err != nil {
		g.rlog.Info("notify body", "sipgw: NOTIFY body rejected", "event", s.o.Event, "identity", s.o.Identity, "err", err)
		s.respond(tx, req, 400, "Bad Request", sip.NewHeader("Warning", `399 jsonrtc "`+warningText(err.Error())+`"`))
		return
	}
	s.respond(tx, req, 200, "OK")
	if deliver != nil {
		deliver()
	}
}

// respond answers a NOTIFY of s with the header rules of its route
// (NOTIFY, on responses).
func (s *Subscription) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, more ...sip.Header) {
	s.g.respondWith(s.o.Route.Transform, routing.Notify, tx, req, code, reason, nil, more...)
}

// warningText makes s safe inside a quoted Warning text.
func warningText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120]
	}
	return strings.ToValidUTF8(s, "")
}
