package sipgw

import (
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// MaxMessageBody bounds the body of a MESSAGE both ways (RFC 3428 asks
// for small pager-mode messages; larger ones get 413).
const MaxMessageBody = 64 << 10

// MessageOptions are one instant message (RFC 3428) from a web user.
type MessageOptions struct {
	// Identity is the sender's web identity (From, via AOR).
	Identity string
	// Target is the recipient: any form ParseTarget takes.
	Target string
	// ContentType defaults to text/plain;charset=UTF-8.
	ContentType string
	Body        []byte
	// Headers are extension headers, each checked with ValidateHeader.
	Headers []Header
	// Route is the trunk and the presentation of the sender.
	Route Route
}

// IncomingMessage is a MESSAGE for a web identity.
type IncomingMessage struct {
	// Identity is the web identity it is for.
	Identity string
	// From is the sender's address (sip:bob@example.com).
	From        string
	ContentType string
	Body        []byte
	// Headers are the extension headers the to_web rules made of it
	// (Header.Name is the extension header's).
	Headers []Header
}

// SendMessage sends a MESSAGE and returns at once; report gets the final
// response's code and reason (the delivery report) once, from a
// goroutine of the UserAgent: 408 when none came, 503 when the gateway
// closed; and the extension headers the route's to_web rules made of
// that response (none when no response came). Invalid options fail at
// once with ErrInvalidInput.
func (g *UserAgent) SendMessage(o MessageOptions, report func(code int, reason string, headers []Header)) error {
	if g.ctx == nil {
		return ErrClosed
	}
	o.Headers = withRouteHeaders(o.Headers, o.Route)
	snd, err := g.senderFor(o.Identity, o.Route.Sender)
	if err != nil {
		return err
	}
	to, err := g.ParseTarget(o.Target)
	if err != nil {
		return err
	}
	hops, err := g.hops(o.Route)
	if err != nil {
		return err
	}
	ruri, err := requestURI(to, o.Route)
	if err != nil {
		return err
	}
	if o.ContentType == "" {
		o.ContentType = "text/plain;charset=UTF-8"
	}
	if err := checkHeaderValue("Content-Type", o.ContentType); err != nil {
		return err
	}
	if len(o.Body) > MaxMessageBody {
		return invalid("message body over %d bytes", MaxMessageBody)
	}
	if err := checkHeaders(o.Headers); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.wg.Go(func() {
		res, err := g.outOfDialog(sip.MESSAGE, o.Identity, o.Route.Trunk, hops, func(req *sip.Request) {
			req.Recipient = *ruri.Clone()
			snd.present(req)
			req.AppendHeader(sip.NewHeader("Content-Type", o.ContentType))
			for _, h := range o.Headers {
				req.AppendHeader(sip.NewHeader(h.Name, h.Value))
			}
			req.SetBody(o.Body)
		}, snd.from, to)
		code, reason := failure(res, err)
		if err != nil && g.ctx.Err() != nil {
			code, reason = 503, "gateway closed"
		}
		var hs []Header
		if err == nil {
			hs = webHeaders(o.Route.Transform, routing.MessageMethod, true, res)
		}
		g.log.Debug("sipgw: MESSAGE answered", "identity", o.Identity, "target", o.Target, "code", code)
		report(code, reason, hs)
	})
	return nil
}

// outOfDialog sends a request outside any dialog to each hop in turn
// until one answers with other than a failover response (failsOver), and
// returns the last answer. fill completes the request requestFor built
// for a hop. It blocks for at most Timer F a hop; the caller holds a
// g.wg slot or its own.
func (g *UserAgent) outOfDialog(method sip.RequestMethod, identity, trunk string, hops []nextHop, fill func(*sip.Request), from, to sip.Uri) (*sip.Response, error) {
	callID, tag := randUUID(), sip.GenerateTagN(16)
	var cseq uint32
	var res *sip.Response
	var err error
	for i, h := range hops {
		ctx, cancel := context.WithTimeout(g.ctx, sip.Timer_F)
		res, err = g.do(ctx, identity, func() *sip.Request {
			cseq++
			req := g.requestFor(method, from, to, tag, callID, cseq, h)
			fill(req)
			return req
		})
		cancel()
		if i == len(hops)-1 || g.ctx.Err() != nil || !failsOver(res, err) {
			break
		}
		code, reason := failure(res, err)
		g.rlog.Info("out-of-dialog failover", "sipgw: "+string(method)+" failed over to the next proxy", "trunk", trunk, "code", code, "reason", reason)
	}
	return res, err
}

// OnMessage sets the function that delivers an incoming MESSAGE to a web
// identity and returns the final response to send (the first answer of
// the web user's sessions) and the extension headers of that answer, for
// the header rules of the response ({ext:NAME}). It runs on its own
// goroutine; ctx ends a little before the sender's transaction would
// time out. Without it, incoming messages get 480.
func (g *UserAgent) OnMessage(f func(ctx context.Context, m *IncomingMessage) (code int, reason string, ext []Header)) {
	g.ev.mu.Lock()
	defer g.ev.mu.Unlock()
	g.ev.onMsg = f
}

func (g *UserAgent) handleMessage(req *sip.Request, tx sip.ServerTransaction) {
	if g.declaredMessage(req, tx) { // request.go
		return
	}
	id, ok := g.identityOf(req)
	if !ok {
		g.respond(tx, req, 404, "Not Found")
		return
	}
	g.ev.mu.Lock()
	f := g.ev.onMsg
	g.ev.mu.Unlock()
	if f == nil {
		g.respond(tx, req, 480, "Temporarily Unavailable")
		return
	}
	body := req.Body()
	if len(body) > MaxMessageBody {
		g.respond(tx, req, 413, "Request Entity Too Large")
		return
	}
	m := &IncomingMessage{Identity: id, Body: append([]byte(nil), body...), ContentType: "text/plain"}
	var x *routing.Transform
	if f := req.From(); f != nil {
		x = g.bindIncoming(routing.Message, id, f.Address.String())
		m.Headers = webHeaders(x, routing.MessageMethod, false, req)
	}
	if ct := req.ContentType(); ct != nil {
		m.ContentType = strings.TrimSpace(ct.Value())
	}
	if from := req.From(); from != nil {
		u := sip.Uri{Scheme: from.Address.Scheme, User: from.Address.User, Host: from.Address.Host}
		if u.Scheme == "" {
			u.Scheme = "sip"
		}
		m.From = u.String()
	}
	if hasCtl(m.From) || hasCtl(m.ContentType) {
		g.respondWith(x, routing.MessageMethod, tx, req, 400, "Bad Request", nil)
		return
	}
	// Answer before Timer F fires at the sender (32 s).
	ctx, cancel := context.WithTimeout(g.ctx, 30*time.Second)
	defer cancel()
	code, reason, ext := f(ctx, m)
	if code < 200 || code > 699 {
		code, reason = 500, "Server Internal Error"
	}
	if reason == "" || hasCtl(reason) || len(reason) > 128 {
		reason = "Response"
	}
	g.respondWith(x, routing.MessageMethod, tx, req, code, reason, ext)
}
