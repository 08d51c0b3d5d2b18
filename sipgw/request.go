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

// InfoRequest is an incoming INFO of a declared Info Package
// (Event.InfoRequest), waiting for its final response.
type InfoRequest struct {
	c       *Call
	req     *sip.Request
	tx      sip.ServerTransaction
	Headers []Header // all of the INFO's
	done    atomic.Bool
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
		r.c.g.rlog.Debug("info respond", "sipgw: respond failed", "code", a.Code, "err", err)
	}
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
