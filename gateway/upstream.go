package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/jsonrtc/jsonrtc/interwork"
	"github.com/jsonrtc/jsonrtc/messaging"
	"github.com/jsonrtc/jsonrtc/notification"
	"github.com/jsonrtc/jsonrtc/presence"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// This file builds and starts the SIP user agent when the sip section is
// configured, and plugs it into the handlers as their upstream
// (package interwork).

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
	var toWeb []string
	for _, tw := range g.cfg.Routing.ToWeb {
		toWeb = append(toWeb, tw.Header)
	}
	s, err := sipgw.New(g.cfg.SIP, &sipgw.Options{Logger: g.log.With("component", "sip"), Trunks: g.router.Load().Trunks(), ToWeb: toWeb})
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
	g.sip.OnMessage(interwork.IncomingMessages(g.msgs, g.router.Load().ToWeb()))
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

// TrunkStatus reports the proxies of a routing trunk and whether the
// health checks see each up (nil without SIP or such a trunk).
func (g *Gateway) TrunkStatus(name string) []sipgw.ProxyStatus {
	if g.sip == nil {
		return nil
	}
	return g.sip.TrunkStatus(name)
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
	return interwork.Presence(g.sip, interwork.PresenceOptions{
		Expiry: time.Duration(g.cfg.Presence.Expiry) * time.Second, Logger: g.log})
}

func (g *Gateway) notificationUpstream() notification.Upstream {
	if g.sip == nil {
		return nil
	}
	return interwork.Notification(g.sip)
}

func (g *Gateway) messagingUpstream() messaging.Upstream {
	if g.sip == nil {
		return nil
	}
	return interwork.Messaging(g.sip)
}
