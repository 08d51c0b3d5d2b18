package sipgw

import (
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/jsonrtc/jsonrtc/routing"
)

// This file applies a call's transformations (routing.Transform, chosen
// when the call started: a reload leaves the calls in flight alone) to
// the requests and responses of its dialog: the header rules' headers on
// what the gateway sends, the to_web rules' extension headers from what
// it receives (docs/routing.md, Transformations).

// dialogMethod is the routing method of a request within a call's
// dialog; false for those no rule names (ACK, PRACK, CANCEL).
func dialogMethod(m sip.RequestMethod) (routing.Method, bool) {
	switch m {
	case sip.INVITE:
		return routing.ReInvite, true
	case sip.UPDATE:
		return routing.Update, true
	case sip.BYE:
		return routing.Bye, true
	case sip.INFO:
		return routing.Info, true
	case sip.REFER:
		return routing.Refer, true
	case sip.NOTIFY:
		return routing.Notify, true
	case sip.MESSAGE:
		return routing.MessageMethod, true
	}
	return 0, false
}

// webHeaders returns the extension headers x's to_web rules make of msg,
// a request of method m the gateway received (response false) or a
// response to one of its own. A value the extension-header grammar
// refuses is left out: what a SIP peer sends reaches the web side only as
// clean as what a client may send, but for the angle brackets of a
// name-addr (P-Asserted-Identity: <sip:...>), which harm no JSON reader.
func webHeaders(x *routing.Transform, m routing.Method, response bool, msg interface{ GetHeader(string) sip.Header }) []Header {
	hs := x.ToWeb(m, response, func(name string) (string, bool) {
		h := msg.GetHeader(name)
		if h == nil {
			return "", false
		}
		v := strings.TrimSpace(h.Value())
		return v, valueProblem(v, true) == ""
	})
	if len(hs) == 0 {
		return nil
	}
	out := make([]Header, len(hs))
	for i, h := range hs {
		out[i] = Header{Name: h.Name, Value: h.Value}
	}
	return out
}

// transformOut adds x's header rules for method m to msg, a request
// within a dialog the gateway sends (response false) or a response it
// sends; ext are the extension headers of the web frame that caused it
// ({ext:NAME}). Each value is checked as a client's extension header is
// (ValidateHeader): one that fails fails msg, which is not sent (400).
// Request-URI parameters are for requests outside a dialog: within one
// the Request-URI is the peer's Contact (RFC 3261 section 12.2.1.1), and
// a drop has no client header to drop (only the initial request carries
// the client's).
func transformOut(x *routing.Transform, m routing.Method, response bool, msg sip.Message, ext []Header) error {
	var em map[string]string
	if len(ext) > 0 {
		em = make(map[string]string, len(ext))
		for _, h := range ext {
			em[strings.ToLower(h.Name)] = h.Value
		}
	}
	var add []sip.Header
	for _, h := range x.ToSIP(m, response, em) {
		if h.Drop || h.Param {
			continue
		}
		if err := ValidateHeader(Header{Name: h.Name, Value: h.Value}); err != nil {
			return err
		}
		add = append(add, sip.NewHeader(h.Name, h.Value))
	}
	for _, h := range add {
		// A rule's header replaces a client's of its name (an answer's
		// calls.sip_headers), as on the initial request: never two.
		// Rule names are never the gateway's own (ValidateHeader).
		if rm, ok := msg.(interface{ RemoveHeader(string) bool }); ok {
			rm.RemoveHeader(h.Name())
		}
	}
	for _, h := range add {
		msg.AppendHeader(h)
	}
	return nil
}

// transformResponse is transformOut for a response the gateway sends on
// its own (no web frame behind it): when a value fails, the rules'
// headers are left off and that is logged, since the response must go
// all the same.
func (c *Call) transformResponse(m routing.Method, res *sip.Response) {
	c.g.transformResponse(c.xform, m, res, "call", c.id)
}

// transformResponse adds x's header rules for method m to res, a
// response the gateway sends with no web frame behind it; args name what
// it answers in the log line of a value left off.
func (g *UserAgent) transformResponse(x *routing.Transform, m routing.Method, res *sip.Response, args ...any) {
	if err := transformOut(x, m, true, res, nil); err != nil {
		g.rlog.Info("transform", "sipgw: a header rule's value left off a response", append(args, "err", err)...)
	}
}

// respondWith answers req with code and reason plus x's header rules for
// method m (a request outside any call the gateway answers: an incoming
// MESSAGE, a NOTIFY of its subscription); ext are the extension headers
// of the web frame behind the answer ({ext:NAME}). A value of ext the
// header grammar refuses leaves the rules that read it off: the answer
// goes all the same.
func (g *UserAgent) respondWith(x *routing.Transform, m routing.Method, tx sip.ServerTransaction, req *sip.Request, code int, reason string, ext []Header, more ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range more {
		res.AppendHeader(h)
	}
	if err := transformOut(x, m, true, res, ext); err != nil {
		g.rlog.Info("transform", "sipgw: a response sent without the header rules that read its frame", "method", m.String(), "err", err)
		g.transformResponse(x, m, res, "method", m.String())
	}
	if err := tx.Respond(res); err != nil {
		g.log.Debug("sipgw: respond failed", "code", code, "err", err)
	}
}

// peerHeaders returns the extension headers the call's to_web rules make
// of req, a request of the peer within the dialog.
func (c *Call) peerHeaders(req *sip.Request) []Header {
	m, ok := dialogMethod(req.Method)
	if !ok {
		return nil
	}
	return webHeaders(c.xform, m, false, req)
}

// ruledTx is a server transaction of the call's dialog whose responses
// get the header rules of its method, whoever builds them: the gateway's
// own (a DTMF INFO's 200, a REFER's 202, a 491) and those sipgo sends
// itself (the 200 of a BYE, in ReadBye). Responses that already carry
// the rules (an answer with its frame's {ext:}) are unchanged by a
// second pass: a rule's header replaces the one of its name, and a rule
// whose placeholder has nothing to give sets none.
type ruledTx struct {
	sip.ServerTransaction
	c *Call
	m routing.Method
}

func (t ruledTx) Respond(res *sip.Response) error {
	t.c.transformResponse(t.m, res)
	return t.ServerTransaction.Respond(res)
}

// ruled returns tx, of req in the call's dialog, with the header rules on
// its responses; tx itself when the call has no rules or no rule can
// name req's method.
func (c *Call) ruled(req *sip.Request, tx sip.ServerTransaction) sip.ServerTransaction {
	m, ok := dialogMethod(req.Method)
	if !ok || c.xform == nil {
		return tx
	}
	return ruledTx{ServerTransaction: tx, c: c, m: m}
}

// transformAnswer adds the header rules of method m to res, the call's
// answer to a peer's request that a web frame decided, with that frame's
// extension headers ext ({ext:NAME}); a value the grammar refuses leaves
// the rules that read the frame off (logged), as the answer must go.
func (c *Call) transformAnswer(m routing.Method, res *sip.Response, ext []Header) {
	if err := transformOut(c.xform, m, true, res, ext); err != nil {
		c.g.rlog.Info("transform", "sipgw: an answer sent without the header rules that read its frame", "call", c.id, "err", err)
		c.transformResponse(m, res)
	}
}
