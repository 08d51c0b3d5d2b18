// Package interwork puts the web sessions on the SIP user agent (sipgw).
//
// It makes the user agent the upstream of the web-side handlers: presence
// watches and publications become SUBSCRIBE, NOTIFY (PIDF) and PUBLISH,
// voicemail subscriptions SUBSCRIBE/NOTIFY of message-summary, and
// instant messages MESSAGE, both ways (docs/protocol.md §10.3-§10.5). The
// handlers know only their Upstream interfaces; the gateway plugs these
// in when its sip section is configured.
//
// [Registrations] registers the identities of sessions (registration.go,
// docs/protocol.md §10.1), and relays the registrar's challenges to the
// web clients (§4.8); the gateway calls it at each session's life events.
//
// Registrations, subscriptions and publications hang on sessions, never
// on sockets, so a resume touches nothing SIP-side.
package interwork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jsonrtc/jsonrtc/internal/ratelog"
	"github.com/jsonrtc/jsonrtc/messaging"
	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/notification/mwi"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/presence/pidf"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// PresenceOptions are what presence on SIP needs beyond the user agent.
type PresenceOptions struct {
	// Expiry is the lifetime of the PUBLISHes (presence.expiry).
	Expiry time.Duration
	Logger *slog.Logger
	// Route says where an identity's PUBLISHes go and which AOR they
	// state (sipgw.PublishOptions.Route); an error leaves the state
	// unpublished. Nil: sip.outbound_proxy and the identity's AOR.
	Route func(identity string) (sipgw.Route, error)
}

// Presence returns the presence handler's upstream on ua (a nil o: the
// defaults).
func Presence(ua *sipgw.UserAgent, o *PresenceOptions) presence.Upstream {
	if o == nil {
		o = &PresenceOptions{}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return sipPresence{ua: ua, expiry: o.Expiry, route: o.Route, log: log, rlog: ratelog.New(log, nil)}
}

// Notification returns the message-notification handler's upstream on ua.
func Notification(ua *sipgw.UserAgent) notification.Upstream { return sipNotification{ua} }

// Messaging returns the messaging handler's upstream on ua.
func Messaging(ua *sipgw.UserAgent) messaging.Upstream { return sipMessaging{ua} }

// rejectCode maps a sipgw error to the code a web start gets.
func rejectCode(err error) (int, string) {
	switch {
	case errors.Is(err, sipgw.ErrInvalidInput):
		return protocol.CodeBadRequest, err.Error()
	default:
		return protocol.CodeServiceUnavailable, "SIP side unavailable"
	}
}

// sipRoute is the SIP side's part of a routing decision: the trunk
// ("" under the built-in profile: the outbound proxy) and the sender.
func sipRoute(d routing.Decision) sipgw.Route {
	return sipgw.Route{Trunk: d.Trunk, Sender: d.Sender, Headers: d.Headers, Transform: d.Transform}
}

// sipTarget turns a pres: URI into the sip: one ParseTarget knows.
func sipTarget(t string) string {
	if len(t) > 5 && strings.EqualFold(t[:5], "pres:") {
		return "sip:" + t[5:]
	}
	return t
}

// contentType is the media type of a Content-Type value, lower case.
func contentType(v string) string {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(v))
	}
	return mt
}

// sipPresence is presence.Upstream on the user agent.
type sipPresence struct {
	ua     *sipgw.UserAgent
	expiry time.Duration
	route  func(identity string) (sipgw.Route, error)
	log    *slog.Logger
	rlog   *ratelog.Logger
}

// Subscribe is SUBSCRIBE Event: presence (RFC 3856).
func (u sipPresence) Subscribe(req presence.UpstreamRequest, ev presence.UpstreamEvents) func() {
	s, err := u.ua.Subscribe(sipgw.SubscribeOptions{
		Identity: req.Subscriber, Target: sipTarget(req.Presentity), Event: sipgw.EventPresence,
		Accept: pidf.ContentType, Expiry: req.Expiry, Route: sipRoute(req.Route),
	}, pidfEvents{ev})
	if err != nil {
		ev.Rejected(rejectCode(err))
		return func() {}
	}
	return s.Stop
}

// Publish is PUBLISH Event: presence of the web user's state, for a user
// who published (docs/protocol.md §10.3).
func (u sipPresence) Publish(presentity string, st protocol.PresencePayload) {
	aor, err := u.ua.AOR(presentity)
	if err != nil {
		return // no SIP identity: nothing to publish
	}
	var route sipgw.Route
	if u.route != nil {
		if route, err = u.route(presentity); err != nil {
			u.rlog.Info("publish refused", "presence not published: refused by routing", "identity", presentity, "err", err)
			return
		}
	}
	st.Presentity = aor.String()
	if route.Sender.From != "" {
		st.Presentity = route.Sender.From
	}
	body, err := pidf.Marshal(st)
	if err != nil {
		u.rlog.Warn("publish state", "presence state not publishable", "identity", presentity, "err", err)
		return
	}
	err = u.ua.Publish(sipgw.PublishOptions{
		Identity: presentity, Event: sipgw.EventPresence, ContentType: pidf.ContentType, Body: body,
		Expiry: u.expiry, Route: route,
	})
	if err != nil && !errors.Is(err, sipgw.ErrClosed) {
		u.rlog.Info("publish failed", "presence not published", "identity", presentity, "err", err)
	}
}

// Withdraw is PUBLISH Expires: 0 with SIP-If-Match: the publication's
// entity tag, when the user's last session ended: the presence server
// drops the gateway's tuple instead of showing it closed until it lapses.
func (u sipPresence) Withdraw(presentity string) {
	if _, err := u.ua.AOR(presentity); err != nil {
		return // no SIP identity: nothing was published
	}
	err := u.ua.Publish(sipgw.PublishOptions{
		Identity: presentity, Event: sipgw.EventPresence, ContentType: pidf.ContentType, Final: true,
	})
	if err != nil && !errors.Is(err, sipgw.ErrClosed) {
		u.log.Info("presence not withdrawn", "identity", presentity, "err", err)
	}
}

// pidfEvents reads NOTIFY bodies with pidf.Parse.
type pidfEvents struct{ ev presence.UpstreamEvents }

func (p pidfEvents) Accepted(hs []sipgw.Header) { p.ev.Accepted(webExt(hs)...) }
func (p pidfEvents) Rejected(code int, reason string, hs []sipgw.Header) {
	p.ev.Rejected(code, reason, webExt(hs)...)
}
func (p pidfEvents) Terminated(reason string) { p.ev.Terminated(reason) }

func (p pidfEvents) Notify(ct string, body []byte, hs []sipgw.Header) (func(), error) {
	ext := webExt(hs)
	if len(body) == 0 {
		// No state known (RFC 3856 section 6.6.2): shown as closed.
		return func() { p.ev.Notify(protocol.PresencePayload{Status: pidf.StatusClosed}, ext...) }, nil
	}
	if contentType(ct) != pidf.ContentType {
		return nil, fmt.Errorf("content type %q is not %s", ct, pidf.ContentType)
	}
	st, err := pidf.Parse(body)
	if err != nil {
		return nil, err
	}
	return func() { p.ev.Notify(st, ext...) }, nil
}

// sipNotification is notification.Upstream on the user agent.
type sipNotification struct{ ua *sipgw.UserAgent }

// Subscribe is SUBSCRIBE Event: message-summary (RFC 3842).
func (u sipNotification) Subscribe(req notification.Request, ev notification.Events) func() {
	s, err := u.ua.Subscribe(sipgw.SubscribeOptions{
		Identity: req.Subscriber, Target: req.Mailbox, Event: sipgw.EventMessageSummary,
		Accept: mwi.ContentType, Expiry: req.Expiry, Route: sipRoute(req.Route),
	}, mwiEvents{ev})
	if err != nil {
		ev.Rejected(rejectCode(err))
		return func() {}
	}
	return s.Stop
}

// mwiEvents reads NOTIFY bodies with mwi.Parse.
type mwiEvents struct{ ev notification.Events }

func (m mwiEvents) Accepted(hs []sipgw.Header) { m.ev.Accepted(webExt(hs)...) }
func (m mwiEvents) Rejected(code int, reason string, hs []sipgw.Header) {
	m.ev.Rejected(code, reason, webExt(hs)...)
}
func (m mwiEvents) Terminated(reason string) { m.ev.Terminated(reason) }

func (m mwiEvents) Notify(ct string, body []byte, hs []sipgw.Header) (func(), error) {
	if len(body) == 0 {
		return nil, nil // no summary yet
	}
	if contentType(ct) != mwi.ContentType {
		return nil, fmt.Errorf("content type %q is not %s", ct, mwi.ContentType)
	}
	sum, err := mwi.Parse(body)
	if err != nil {
		return nil, err
	}
	if sum.Payload() == nil {
		return nil, errors.New("message summary has nothing to report")
	}
	return func() { m.ev.Notify(sum, webExt(hs)...) }, nil
}

// sipMessaging is messaging.Upstream on the user agent.
type sipMessaging struct{ ua *sipgw.UserAgent }

// Routes: every target SIP can address (sip:, sips:, tel:, a number, a
// user@domain that is no web identity).
func (u sipMessaging) Routes(target string) bool {
	_, err := u.ua.ParseTarget(target)
	return err == nil
}

// Send is MESSAGE (RFC 3428); the final response is the delivery report,
// with the extension headers the route's to_web rules made of it. m.Ext
// goes to SIP only as the route's header rules read it ({ext:NAME},
// already in m.Route.Headers): calls.sip_headers allows headers onto a
// call's INVITE, never onto a MESSAGE (docs/routing.md, Header rules).
func (u sipMessaging) Send(m messaging.Outgoing, report func(code int, reason string, ext []protocol.Ext)) error {
	return u.ua.SendMessage(sipgw.MessageOptions{
		Identity: m.From, Target: m.To, ContentType: m.Payload.ContentType, Body: []byte(m.Payload.Body),
		Route: sipRoute(m.Route),
	}, func(code int, reason string, hs []sipgw.Header) { report(code, reason, webExt(hs)) })
}

// webExt is the extension headers of a frame to the web side made of
// what the user agent's to_web rules read from a SIP message.
func webExt(hs []sipgw.Header) []protocol.Ext {
	var ext []protocol.Ext
	for _, h := range hs {
		ext = append(ext, protocol.Ext{Name: h.Name, Kind: protocol.ExtString, Value: h.Value})
	}
	return ext
}

// IncomingMessages returns the user agent's handler of MESSAGE requests:
// it delivers each to the live sessions of its web identity through h,
// and their first answer is the SIP response. The frames carry the
// extension headers the user agent's to_web rules made of the MESSAGE;
// the answer's go to the header rules of the response.
func IncomingMessages(h *messaging.Handler) func(context.Context, *sipgw.IncomingMessage) (int, string, []sipgw.Header) {
	return func(ctx context.Context, m *sipgw.IncomingMessage) (int, string, []sipgw.Header) {
		return incomingMessage(ctx, h, m)
	}
}

func incomingMessage(ctx context.Context, h *messaging.Handler, m *sipgw.IncomingMessage) (int, string, []sipgw.Header) {
	if !utf8.Valid(m.Body) {
		return 415, "Unsupported Media Type", nil
	}
	type answer struct {
		code   int
		reason string
		ext    []protocol.Ext
	}
	ch := make(chan answer, 1)
	h.Deliver(m.From, m.Identity, protocol.MessagePayload{ContentType: m.ContentType, Body: string(m.Body)},
		func(code int, reason string, ext []protocol.Ext) {
			select {
			case ch <- answer{code, reason, ext}:
			default:
			}
		}, webExt(m.Headers)...)
	select {
	case a := <-ch:
		hs := make([]sipgw.Header, 0, len(a.ext))
		for _, e := range a.ext {
			hs = append(hs, sipgw.Header{Name: e.Name, Value: e.Value})
		}
		return a.code, a.reason, hs
	case <-ctx.Done():
		return 408, "Request Timeout", nil
	}
}
