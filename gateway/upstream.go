package gateway

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jsonrtc/jsonrtc/messaging"
	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/notification/mwi"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/presence/pidf"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// This file interworks presence, message_notification and messaging
// with SIP (docs/protocol.md §10.3-§10.5) when the sip section is configured:
// SUBSCRIBE/NOTIFY (PIDF, message-summary), PUBLISH and MESSAGE through
// the gateway's sipgw.UserAgent. Subscriptions and publications hang on
// sessions, never on sockets, so a resume touches nothing SIP-side.

// sipConfigured reports whether the sip section is in use.
func (c *Config) sipConfigured() bool {
	return c.SIP.Domain != "" || c.SIP.Listen != (sipgw.ListenConfig{})
}

// newSIP builds the SIP side when configured; startSIP starts it once
// the handlers exist.
func (g *Gateway) newSIP() error {
	if !g.cfg.sipConfigured() {
		return nil
	}
	s, err := sipgw.New(g.cfg.SIP, sipgw.Options{Logger: g.log.With("component", "sip")})
	if err != nil {
		return err
	}
	g.sip = s
	return nil
}

func (g *Gateway) startSIP() error {
	if g.sip == nil {
		return nil
	}
	g.sip.OnMessage(g.incomingMessage)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.sip.Start(ctx); err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	return nil
}

// closeSIP ends every SIP subscription, publication and transaction
// left after the sessions ended, waiting for the peers as long as ctx
// allows.
func (g *Gateway) closeSIP(ctx context.Context) {
	if g.sip != nil {
		if err := g.sip.Close(ctx); err != nil {
			g.log.Warn("closing the SIP side", "err", err)
		}
	}
}

// SIPAddr returns the bound SIP address of a transport ("udp", "tcp",
// "tls"), or "" without SIP.
func (g *Gateway) SIPAddr(transport string) string {
	if g.sip == nil {
		return ""
	}
	return g.sip.Addr(transport)
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
	return sipPresence{g}
}

func (g *Gateway) notificationUpstream() notification.Upstream {
	if g.sip == nil {
		return nil
	}
	return sipNotification{g}
}

func (g *Gateway) messagingUpstream() messaging.Upstream {
	if g.sip == nil {
		return nil
	}
	return sipMessaging{g}
}

// rejectCode maps a sipgw error to the code a web start gets.
func rejectCode(err error) (int, string) {
	switch {
	case errors.Is(err, sipgw.ErrInvalidInput):
		return protocol.CodeBadRequest, err.Error()
	default:
		return protocol.CodeServiceUnavailable, "SIP side unavailable"
	}
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

type sipPresence struct{ g *Gateway }

// Subscribe is SUBSCRIBE Event: presence (RFC 3856).
func (u sipPresence) Subscribe(req presence.UpstreamRequest, ev presence.UpstreamEvents) func() {
	s, err := u.g.sip.Subscribe(sipgw.SubscribeOptions{
		Identity: req.Subscriber, Target: sipTarget(req.Presentity), Event: sipgw.EventPresence,
		Accept: pidf.ContentType, Expiry: req.Expiry,
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
	aor, err := u.g.sip.AOR(presentity)
	if err != nil {
		return // no SIP identity: nothing to publish
	}
	st.Presentity = aor.String()
	body, err := pidf.Marshal(st)
	if err != nil {
		u.g.rlog.Warn("publish state", "presence state not publishable", "identity", presentity, "err", err)
		return
	}
	err = u.g.sip.Publish(sipgw.PublishOptions{
		Identity: presentity, Event: sipgw.EventPresence, ContentType: pidf.ContentType, Body: body,
		Expiry: time.Duration(u.g.cfg.Presence.Expiry) * time.Second,
	})
	if err != nil && !errors.Is(err, sipgw.ErrClosed) {
		u.g.rlog.Info("publish failed", "presence not published", "identity", presentity, "err", err)
	}
}

// Withdraw is PUBLISH Expires: 0 with SIP-If-Match: the publication's
// entity tag, when the user's last session ended: the presence server
// drops the gateway's tuple instead of showing it closed until it lapses.
func (u sipPresence) Withdraw(presentity string) {
	if _, err := u.g.sip.AOR(presentity); err != nil {
		return // no SIP identity: nothing was published
	}
	err := u.g.sip.Publish(sipgw.PublishOptions{
		Identity: presentity, Event: sipgw.EventPresence, ContentType: pidf.ContentType, Final: true,
	})
	if err != nil && !errors.Is(err, sipgw.ErrClosed) {
		u.g.log.Info("presence not withdrawn", "identity", presentity, "err", err)
	}
}

// pidfEvents reads NOTIFY bodies with pidf.Parse.
type pidfEvents struct{ ev presence.UpstreamEvents }

func (p pidfEvents) Accepted()                        { p.ev.Accepted() }
func (p pidfEvents) Rejected(code int, reason string) { p.ev.Rejected(code, reason) }
func (p pidfEvents) Terminated(reason string)         { p.ev.Terminated(reason) }

func (p pidfEvents) Notify(ct string, body []byte) (func(), error) {
	if len(body) == 0 {
		// No state known (RFC 3856 section 6.6.2): shown as closed.
		return func() { p.ev.Notify(protocol.PresencePayload{Status: pidf.StatusClosed}) }, nil
	}
	if contentType(ct) != pidf.ContentType {
		return nil, fmt.Errorf("content type %q is not %s", ct, pidf.ContentType)
	}
	st, err := pidf.Parse(body)
	if err != nil {
		return nil, err
	}
	return func() { p.ev.Notify(st) }, nil
}

type sipNotification struct{ g *Gateway }

// Subscribe is SUBSCRIBE Event: message-summary (RFC 3842).
func (u sipNotification) Subscribe(req notification.Request, ev notification.Events) func() {
	s, err := u.g.sip.Subscribe(sipgw.SubscribeOptions{
		Identity: req.Subscriber, Target: req.Mailbox, Event: sipgw.EventMessageSummary,
		Accept: mwi.ContentType, Expiry: req.Expiry,
	}, mwiEvents{ev})
	if err != nil {
		ev.Rejected(rejectCode(err))
		return func() {}
	}
	return s.Stop
}

// mwiEvents reads NOTIFY bodies with mwi.Parse.
type mwiEvents struct{ ev notification.Events }

func (m mwiEvents) Accepted()                        { m.ev.Accepted() }
func (m mwiEvents) Rejected(code int, reason string) { m.ev.Rejected(code, reason) }
func (m mwiEvents) Terminated(reason string)         { m.ev.Terminated(reason) }

func (m mwiEvents) Notify(ct string, body []byte) (func(), error) {
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
	return func() { m.ev.Notify(sum) }, nil
}

type sipMessaging struct{ g *Gateway }

// Routes: every target SIP can address (sip:, sips:, tel:, a number, a
// user@domain that is no web identity).
func (u sipMessaging) Routes(target string) bool {
	_, err := u.g.sip.ParseTarget(target)
	return err == nil
}

// Send is MESSAGE (RFC 3428); the final response is the delivery report.
func (u sipMessaging) Send(m messaging.Outgoing, report func(code int, reason string)) error {
	return u.g.sip.SendMessage(sipgw.MessageOptions{
		Identity: m.From, Target: m.To, ContentType: m.Payload.ContentType, Body: []byte(m.Payload.Body),
	}, report)
}

// incomingMessage delivers a MESSAGE to the live sessions of its web
// identity; their first answer is the SIP response.
func (g *Gateway) incomingMessage(ctx context.Context, m *sipgw.IncomingMessage) (int, string) {
	if !utf8.Valid(m.Body) {
		return 415, "Unsupported Media Type"
	}
	type answer struct {
		code   int
		reason string
	}
	ch := make(chan answer, 1)
	g.msgs.Deliver(m.From, m.Identity, protocol.MessagePayload{ContentType: m.ContentType, Body: string(m.Body)},
		func(code int, reason string) {
			select {
			case ch <- answer{code, reason}:
			default:
			}
		})
	select {
	case a := <-ch:
		return a.code, a.reason
	case <-ctx.Done():
		return 408, "Request Timeout"
	}
}
