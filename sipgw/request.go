package sipgw

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// Requests of actions an operator declares (the templates package,
// docs/routing.md "Templates"): INFO of an Info Package (RFC 6086),
// MESSAGE, NOTIFY, UPDATE or OPTIONS, in a call's dialog
// ([Call.Request]) or outside any ([UserAgent.Request]), whose final
// response the caller maps back to the web client.

// Request is one such request.
type Request struct {
	// Method is INFO, MESSAGE, NOTIFY, UPDATE or OPTIONS.
	Method string
	// InfoPackage is an INFO's Info-Package.
	InfoPackage string
	// Event is a NOTIFY's Event header (RFC 6665).
	Event string
	// ContentType of Body; required with a body.
	ContentType string
	Body        []byte
	// Headers are added as they are, each checked with ValidateHeader.
	Headers []Header
}

// Answer is a final response: to a Request, or the one to send to an
// incoming request ([InfoRequest.Respond]).
type Answer struct {
	Code        int
	Reason      string
	ContentType string
	Body        []byte
	// Headers: a received answer's extension headers (any header whose
	// name begins with "X-"); on one sent, added as they are.
	Headers []Header
}

var declaredMethods = map[string]bool{"INFO": true, "MESSAGE": true, "NOTIFY": true, "UPDATE": true, "OPTIONS": true}

func (r Request) check(inDialog bool) error {
	switch {
	case !declaredMethods[r.Method]:
		return invalid("method %q", r.Method)
	case !inDialog && (r.Method == "INFO" || r.Method == "UPDATE"):
		return invalid("%s outside a dialog", r.Method)
	case r.InfoPackage != "" && !validToken(r.InfoPackage):
		return invalid("info package %q", r.InfoPackage)
	case len(r.Body) > MaxMessageBody:
		return invalid("body over %d bytes", MaxMessageBody)
	case len(r.Body) > 0 && r.ContentType == "":
		return invalid("a body without a content type")
	}
	if r.ContentType != "" {
		if err := checkHeaderValue("Content-Type", r.ContentType); err != nil {
			return err
		}
	}
	if r.Event != "" {
		if err := checkHeaderValue("Event", r.Event); err != nil {
			return err
		}
	}
	return checkHeaders(r.Headers)
}

// ValidateRequest checks r as Call.Request (inDialog) or
// UserAgent.Request would before sending it.
func ValidateRequest(r Request, inDialog bool) error { return r.check(inDialog) }

// fill adds r's headers and body to req.
func (r Request) fill(req *sip.Request) {
	if r.InfoPackage != "" {
		req.AppendHeader(sip.NewHeader("Info-Package", r.InfoPackage))
	}
	if r.Event != "" {
		req.AppendHeader(sip.NewHeader("Event", r.Event))
	}
	for _, h := range r.Headers {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	if len(r.Body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", r.ContentType))
		if r.InfoPackage != "" {
			// RFC 6086 section 4.2.2: the body belongs to the package.
			req.AppendHeader(sip.NewHeader("Content-Disposition", "Info-Package"))
		}
		req.SetBody(r.Body)
	}
}

func answerOf(res *sip.Response) Answer {
	a := Answer{Code: res.StatusCode, Reason: res.Reason, Body: res.Body()}
	if ct := res.ContentType(); ct != nil {
		a.ContentType = ct.Value()
	}
	for _, h := range res.Headers() {
		if n := h.Name(); len(n) > 2 && strings.EqualFold(n[:2], "x-") {
			a.Headers = append(a.Headers, Header{Name: n, Value: h.Value()})
		}
	}
	return a
}

// Request sends r in the confirmed dialog and returns its final
// response, whatever its code. The error is a transport failure or
// timeout, ErrCallState before the ACK, or ErrInvalidInput.
func (c *Call) Request(ctx context.Context, r Request) (Answer, error) {
	if err := r.check(true); err != nil {
		return Answer{}, err
	}
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st != stateConfirmed {
		return Answer{}, ErrCallState
	}
	if err := c.acquire(ctx); err != nil {
		return Answer{}, err
	}
	defer c.release()
	req := sip.NewRequest(sip.RequestMethod(r.Method), c.remoteTarget())
	r.fill(req)
	res, err := c.request(ctx, req, nil)
	if err != nil {
		return Answer{}, err
	}
	return answerOf(res), nil
}

// Request sends r outside any dialog from identity to target over route
// (failing over as MESSAGE does) and returns its final response. It
// blocks until then (Timer F a hop at most).
func (g *UserAgent) Request(identity, target string, route Route, r Request) (Answer, error) {
	if g.ctx == nil {
		return Answer{}, ErrClosed
	}
	if err := r.check(false); err != nil {
		return Answer{}, err
	}
	r.Headers = withRouteHeaders(r.Headers, route)
	snd, err := g.senderFor(identity, route.Sender)
	if err != nil {
		return Answer{}, err
	}
	to, err := g.ParseTarget(target)
	if err != nil {
		return Answer{}, err
	}
	hops, err := g.hops(route)
	if err != nil {
		return Answer{}, err
	}
	ruri, err := requestURI(to, route)
	if err != nil {
		return Answer{}, err
	}
	g.mu.Lock()
	closed := g.closed
	if !closed {
		g.wg.Add(1)
	}
	g.mu.Unlock()
	if closed {
		return Answer{}, ErrClosed
	}
	defer g.wg.Done()
	res, err := g.outOfDialog(sip.RequestMethod(r.Method), identity, route.Trunk, hops, func(req *sip.Request) {
		req.Recipient = *ruri.Clone()
		snd.present(req)
		r.fill(req)
	}, snd.from, to)
	if err != nil {
		return Answer{}, err
	}
	return answerOf(res), nil
}

// ErrorCode is the code and reason an error of Request maps to (see
// ResponseCode; a timeout is 408).
func ErrorCode(err error) (int, string) { return failure(nil, err) }

// InfoRequest is an incoming request of a declared action, waiting for
// its final response: an INFO of a declared Info Package
// (Event.InfoRequest), a NOTIFY, MESSAGE or UPDATE the declared actions
// receive in a call's dialog (Event.InfoRequest, of an EventInfo too),
// or a MESSAGE to a web identity outside any dialog ([UserAgent.OnDeclared]).
type InfoRequest struct {
	g       *UserAgent
	req     *sip.Request
	tx      sip.ServerTransaction
	Headers []Header // all of the request's
	// Method is the request's method; "" (an INFO) in the tests' fakes.
	Method string
	// Mark is what names its action: the Info-Package of an INFO, the
	// Event's package of a NOTIFY, the Content-Type of a MESSAGE or an
	// UPDATE; lower case, without parameters.
	Mark string
	// Out of dialog only: the web identity it is for, the sender's
	// address (sip:bob@example.com), its content type and body.
	Identity, From, ContentType string
	Body                        []byte
	done                        atomic.Bool
}

// Respond sends the final response, once; later calls do nothing.
func (r *InfoRequest) Respond(a Answer) {
	if !r.done.CompareAndSwap(false, true) {
		return
	}
	if a.Code < 200 || a.Code > 699 {
		a.Code = 500
	}
	res := sip.NewResponseFromRequest(r.req, a.Code, a.Reason, nil)
	if a.Reason == "" {
		res.Reason = protocol.Reason(a.Code)
	}
	if len(a.Body) > 0 && a.ContentType != "" && checkHeaderValue("Content-Type", a.ContentType) == nil && len(a.Body) <= MaxMessageBody {
		res.AppendHeader(sip.NewHeader("Content-Type", a.ContentType))
		res.SetBody(a.Body)
	}
	if err := r.tx.Respond(res); err != nil {
		r.g.rlog.Debug("info respond", "sipgw: respond failed", "code", a.Code, "err", err)
	}
}

func (g *UserAgent) incoming(req *sip.Request, tx sip.ServerTransaction, mark string) *InfoRequest {
	r := &InfoRequest{g: g, req: req, tx: tx, Method: string(req.Method), Mark: mark}
	for _, h := range req.Headers() {
		r.Headers = append(r.Headers, Header{Name: h.Name(), Value: h.Value()})
	}
	return r
}

// SetReceives sets what reports whether the declared actions receive an
// incoming request of method (NOTIFY, MESSAGE or UPDATE) whose mark is
// mark (see InfoRequest.Mark): in a call's dialog (inDialog), or to a web
// identity outside any. It is asked for each request, so a reload
// applies to the next one. Without it, or when it says no, a request is
// handled as before (a NOTIFY of a REFER, an instant message, a session
// refresh).
func (g *UserAgent) SetReceives(f func(inDialog bool, method, mark string) bool) {
	g.receives.Store(&f)
}

// OnDeclared sets the function that takes a MESSAGE of a declared
// action to a web identity, outside any dialog; it must Respond, at once
// or later (within the sender's Timer F). Without it such a MESSAGE is
// an instant message (OnMessage).
func (g *UserAgent) OnDeclared(f func(*InfoRequest)) {
	g.onDeclared.Store(&f)
}

// markOf is the mark of an incoming NOTIFY, MESSAGE or UPDATE.
func markOf(req *sip.Request) string {
	var h sip.Header
	if req.Method == sip.NOTIFY {
		h = req.GetHeader("Event")
	} else {
		h = req.GetHeader("Content-Type")
	}
	if h == nil {
		return ""
	}
	return Mark(h.Value())
}

func (g *UserAgent) receivesReq(inDialog bool, req *sip.Request) (string, bool) {
	f := g.receives.Load()
	mark := markOf(req)
	// A NOTIFY of refer is the progress of our transfer (refer.go).
	if f == nil || mark == "" || mark == "refer" || mark == "application/sdp" || hasCtl(mark) {
		return "", false
	}
	return mark, (*f)(inDialog, string(req.Method), mark)
}

// declared hands an in-dialog NOTIFY, MESSAGE or UPDATE (with a body)
// of a declared action to the call's handler as an EventInfo whose
// InfoRequest it answers, and reports whether it was one.
func (c *Call) declared(req *sip.Request, tx sip.ServerTransaction) bool {
	mark, ok := c.g.receivesReq(true, req)
	if !ok {
		return false
	}
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch {
	case st == stateEnded:
		c.g.respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return true
	case len(req.Body()) > MaxMessageBody:
		c.g.respond(tx, req, 413, "Request Entity Too Large")
		return true
	}
	ev := Event{Kind: EventInfo, Body: req.Body(), Headers: c.peerHeaders(req), InfoRequest: c.g.incoming(req, tx, mark)}
	if ct := req.ContentType(); ct != nil {
		ev.ContentType = Mark(ct.Value())
	}
	c.deliver(func() { c.emit(ev) })
	return true
}

// Mark is v (a Content-Type or Event value) lower case, without
// parameters.
func Mark(v string) string {
	v, _, _ = strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(v))
}

// declaredMessage takes a MESSAGE of a declared action, in a call's
// dialog or to a web identity (OnDeclared), and reports whether it was
// one.
func (g *UserAgent) declaredMessage(req *sip.Request, tx sip.ServerTransaction) bool {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		if c := g.findDialog(req); c != nil {
			// In a call only a call action takes it; else it stays an
			// instant message, as before templates.
			return c.declared(req, tx)
		}
	}
	f := g.onDeclared.Load()
	if f == nil {
		return false
	}
	mark, ok := g.receivesReq(false, req)
	if !ok {
		return false
	}
	id, ok := g.identityOf(req)
	if !ok {
		return false
	}
	if len(req.Body()) > MaxMessageBody {
		g.respond(tx, req, 413, "Request Entity Too Large")
		return true
	}
	r := g.incoming(req, tx, mark)
	r.Identity, r.ContentType, r.Body = id, mark, append([]byte(nil), req.Body()...)
	if from := req.From(); from != nil && !hasCtl(from.Address.User) && !hasCtl(from.Address.Host) {
		u := sip.Uri{Scheme: "sip", User: from.Address.User, Host: from.Address.Host}
		if from.Address.Scheme == "sips" {
			u.Scheme = "sips"
		}
		r.From = u.String()
	}
	(*f)(r)
	return true
}

// SetInfoPackages sets what lists the Info Packages, in lower case,
// that the gateway takes in a call besides trickle-ice (the templates'
// info_package; it is asked each time, so a reload applies to the next
// message). An INFO of another package gets 469.
func (g *UserAgent) SetInfoPackages(list func() []string) {
	g.infoPkgs.Store(&list)
}

func (g *UserAgent) infoPackages() []string {
	if f := g.infoPkgs.Load(); f != nil {
		return (*f)()
	}
	return nil
}

func (g *UserAgent) acceptsInfo(pkg string) bool {
	return slices.Contains(g.infoPackages(), pkg)
}
