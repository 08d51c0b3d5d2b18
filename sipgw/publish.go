package sipgw

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// PublishOptions are one state of a web identity to publish (RFC 3903).
type PublishOptions struct {
	// Identity is the web identity whose state it is; its AOR is the
	// Request-URI, From and To.
	Identity string
	// Event is the event package, EventPresence.
	Event string
	// ContentType and Body are the document (application/pidf+xml).
	ContentType string
	Body        []byte
	// Expiry is the lifetime asked for. Default one hour.
	Expiry time.Duration
	// Final: the identity went away. The publication is withdrawn
	// (PUBLISH Expires: 0 with SIP-If-Match: its entity tag, RFC 3903
	// section 4.5) instead of left to lapse: the presence server then
	// shows only the identity's other sources (its SIP phone). The
	// document is not sent.
	Final bool
	// Route is where the PUBLISHes go (its trunk, with failover; "" the
	// outbound proxy) and, by its Sender's From, the AOR whose state
	// they are (the application's sip_identity; unset, the identity's
	// AOR). A publication keeps the route it started with.
	Route Route
}

// publication is the one PUBLISH state of an identity: the latest
// document waiting to go (coalesced), and the entity tag of the one the
// server holds. One goroutine per publication sends; it ends when the
// publication lapses or is removed.
type publication struct {
	g        *UserAgent
	identity string
	aor      sip.Uri
	trunk    string
	xform    *routing.Transform // the header rules of its PUBLISHes
	event    string
	callID   string
	fromTag  string

	wake     chan struct{} // cap 1
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu    sync.Mutex // guards below
	next  *PublishOptions
	cseq  uint32
	etag  string // loop-owned, under mu for reads by tests
	ended bool
}

// Publish records the identity's latest state and returns at once; the
// gateway sends it (PUBLISH, SIP-If-Match once the server gave an
// entity tag, a fresh publication after 412) and refreshes it before it
// expires. Calls are coalesced per identity: only the latest state is
// sent. Invalid options fail with ErrInvalidInput.
func (g *UserAgent) Publish(o PublishOptions) error {
	if g.ctx == nil {
		return ErrClosed
	}
	aor, err := g.AOR(o.Identity)
	if o.Route.Sender.From != "" {
		aor, err = parseIdentityURI("sip_identity", o.Route.Sender.From)
	}
	if err != nil {
		return err
	}
	if o.Event == "" || strings.ContainsAny(o.Event, " ;,\t\r\n") || hasCtl(o.ContentType) || o.ContentType == "" {
		return invalid("event %q or content type %q", o.Event, o.ContentType)
	}
	if o.Expiry <= 0 {
		o.Expiry = time.Hour
	}
	o.Body = append([]byte(nil), o.Body...)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ev.mu.Lock()
	defer g.ev.mu.Unlock()
	if g.closed || g.ev.closing {
		return ErrClosed
	}
	p := g.ev.pubs[o.Identity]
	if p == nil {
		if o.Final {
			return nil // nothing published: nothing to withdraw
		}
		p = &publication{g: g, identity: o.Identity, aor: aor, trunk: o.Route.Trunk, xform: o.Route.Transform, event: o.Event,
			callID: randUUID(), fromTag: sip.GenerateTagN(16),
			wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		if g.ev.pubs == nil {
			g.ev.pubs = map[string]*publication{}
		}
		g.ev.pubs[o.Identity] = p
		g.wg.Go(p.run)
	}
	p.mu.Lock()
	p.next = &o
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

func (p *publication) run() {
	g := p.g
	defer close(p.done)
	var timer *time.Timer
	var timerC <-chan time.Time
	var cur PublishOptions // the document the server holds
	arm := func(d time.Duration) {
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(d)
		timerC = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-p.wake:
			p.mu.Lock()
			o := p.next
			p.next = nil
			p.mu.Unlock()
			if o == nil {
				continue
			}
			if o.Final {
				timerC = nil
				if p.getETag() != "" {
					p.remove()
				}
				if p.exit() {
					return
				}
				continue
			}
			cur = *o
			granted, ok := p.send(&cur, true)
			switch {
			case !ok && p.exit():
				return
			case !ok:
				timerC = nil
			default:
				arm(max(granted*4/5, 500*time.Millisecond))
			}
		case <-timerC:
			timerC = nil
			granted, ok := p.send(&cur, false)
			if !ok {
				// Refresh failed (412 included): publish the whole state
				// anew.
				granted, ok = p.send(&cur, true)
			}
			if ok {
				arm(max(granted*4/5, 500*time.Millisecond))
			} else if p.exit() {
				return
			}
		case <-p.stop:
			if p.getETag() != "" {
				p.remove()
			}
			p.forget()
			return
		case <-g.ctx.Done():
			p.forget()
			return
		}
	}
}

// exit ends the publication unless a newer state is waiting; it reports
// whether the goroutine must return.
func (p *publication) exit() bool {
	g := p.g
	g.ev.mu.Lock()
	defer g.ev.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next != nil {
		return false
	}
	p.ended = true
	if g.ev.pubs[p.identity] == p {
		delete(g.ev.pubs, p.identity)
	}
	return true
}

func (p *publication) forget() {
	g := p.g
	g.ev.mu.Lock()
	defer g.ev.mu.Unlock()
	if g.ev.pubs[p.identity] == p {
		delete(g.ev.pubs, p.identity)
	}
}

func (p *publication) setETag(s string) { p.mu.Lock(); p.etag = s; p.mu.Unlock() }
func (p *publication) getETag() string  { p.mu.Lock(); defer p.mu.Unlock(); return p.etag }

// send publishes o: with body when full (initial or modify), else as a
// refresh. On 412 the entity tag is forgotten and, for a modify, the
// state sent as a fresh publication.
func (p *publication) send(o *PublishOptions, full bool) (time.Duration, bool) {
	for attempt := 0; attempt < 2; attempt++ {
		etag := p.getETag()
		if !full && etag == "" {
			return 0, false
		}
		res, err := p.do(o.Expiry, etag, o, full)
		if err != nil {
			p.g.rlog.Info("publish", "sipgw: PUBLISH failed", "identity", p.identity, "err", err)
			return 0, false
		}
		if res.StatusCode == 412 {
			p.setETag("")
			if full {
				continue
			}
			return 0, false
		}
		if !res.IsSuccess() {
			p.g.rlog.Info("publish", "sipgw: PUBLISH refused", "identity", p.identity, "code", res.StatusCode)
			return 0, false
		}
		if h := res.GetHeader("SIP-ETag"); h != nil {
			p.setETag(strings.TrimSpace(h.Value()))
		}
		granted := o.Expiry
		if h := res.GetHeader("Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
				granted = min(time.Duration(n)*time.Second, o.Expiry)
			}
		}
		return granted, true
	}
	return 0, false
}

// remove withdraws the publication (Expires: 0).
func (p *publication) remove() {
	etag := p.getETag()
	res, err := p.do(0, etag, nil, false)
	if err == nil && !res.IsSuccess() {
		err = &ResponseError{Code: res.StatusCode, Reason: res.Reason}
	}
	p.setETag("")
	p.g.log.Debug("sipgw: publication removed", "identity", p.identity, "err", err)
}

// do sends one PUBLISH through the publication's trunk, failing over
// from a proxy that answers 503 or 408, or not at all, to the next (as
// MESSAGE does).
func (p *publication) do(expiry time.Duration, etag string, o *PublishOptions, full bool) (*sip.Response, error) {
	hops, err := p.g.hops(Route{Trunk: p.trunk})
	if err != nil {
		return nil, err
	}
	var res *sip.Response
	for i, h := range hops {
		res, err = p.doVia(expiry, etag, o, full, h)
		if i == len(hops)-1 || p.g.ctx.Err() != nil || !failsOver(res, err) {
			break
		}
		p.g.rlog.Info("publish failover", "sipgw: PUBLISH failed over to the next proxy", "trunk", p.trunk)
	}
	return res, err
}

func (p *publication) doVia(expiry time.Duration, etag string, o *PublishOptions, full bool, h nextHop) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(p.g.ctx, sip.Timer_F)
	defer cancel()
	return p.g.do(ctx, p.identity, func() *sip.Request {
		p.mu.Lock()
		p.cseq++
		cseq := p.cseq
		p.mu.Unlock()
		req := p.g.requestFor(sip.PUBLISH, p.aor, p.aor, p.fromTag, p.callID, cseq, h)
		req.AppendHeader(sip.NewHeader("Event", p.event))
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expiry/time.Second))))
		if etag != "" {
			req.AppendHeader(sip.NewHeader("SIP-If-Match", etag))
		}
		if full && o != nil {
			req.AppendHeader(sip.NewHeader("Content-Type", o.ContentType))
			req.SetBody(o.Body)
		}
		if err := transformOut(p.xform, routing.PublishMethod, false, req, nil); err != nil {
			// No web frame behind a PUBLISH to refuse: the state goes
			// without the rules' headers.
			p.g.rlog.Info("transform", "sipgw: header rules left off a PUBLISH", "identity", p.identity, "err", err)
		}
		return req
	})
}
