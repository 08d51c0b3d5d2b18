package presence

import (
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Upstream reaches presentities that are not web users, and lets others
// see web users. The gateway implements it with SIP: Subscribe as
// SUBSCRIBE Event: presence (RFC 3856) whose NOTIFY bodies it reads with
// pidf.Parse, stop as SUBSCRIBE Expires: 0, Publish as PUBLISH (RFC 3903)
// of pidf.Marshal(state).
//
// Its methods must return without waiting on the network.
type Upstream interface {
	// Subscribe starts a subscription and returns at once. Its outcome
	// goes to ev, from any goroutine, even from inside Subscribe: first
	// Accepted or Rejected, once; after Accepted, Notify any number of
	// times and Terminated at most once. The Upstream keeps its own side
	// alive (refreshing the SIP subscription) until stop is called or it
	// reports Rejected or Terminated; the Handler owns the web side's
	// expiry. stop is called without the Handler's lock, at most once,
	// and must be harmless after Rejected or Terminated.
	Subscribe(req UpstreamRequest, ev UpstreamEvents) (stop func())
	// Publish reports the state of a web user whenever it changes, once
	// a session of the user published (or watched, with
	// Config.PublishWhenWatching). It is called with the Handler's lock
	// held, in the order of changes: it must only record the state
	// (coalescing per presentity) and return.
	Publish(presentity string, state protocol.PresencePayload)
	// Withdraw ends the publication of a web user whose last session
	// ended (PUBLISH Expires: 0), with the same rules as Publish, whose
	// next call publishes anew.
	Withdraw(presentity string)
}

// UpstreamRequest is a subscription the Handler asks the Upstream for.
type UpstreamRequest struct {
	// Subscriber is the watcher's web identity.
	Subscriber string
	// Presentity is the target as the watcher named it.
	Presentity string
	// Expiry is the lifetime granted on the web side.
	Expiry time.Duration
	// Ext are the start's extension headers, for the gateway's mapping
	// rules.
	Ext []protocol.Ext
	// Route is the routing decision: its trunk and sender presentation
	// (Presentity is already its target).
	Route routing.Decision
}

// UpstreamEvents receives the outcome of one Upstream subscription. Its
// methods are safe for concurrent use and ignore calls after the
// subscription ended.
type UpstreamEvents interface {
	// Accepted: the subscription is in place (2xx to SUBSCRIBE). ext,
	// here as for Rejected and Notify, are extension headers for the
	// frame the subscriber gets (what the to_web rules made of the SIP
	// response or NOTIFY, docs/routing.md).
	Accepted(ext ...protocol.Ext)
	// Rejected: it failed before or instead of being accepted, with a
	// SIP final response code (a 408 for a timeout).
	Rejected(code int, reason string, ext ...protocol.Ext)
	// Notify reports the presentity's state (a NOTIFY body through
	// pidf.Parse). One before Accepted is kept and sent after it.
	Notify(state protocol.PresencePayload, ext ...protocol.Ext)
	// Terminated: the subscription ended on the upstream side (NOTIFY
	// with Subscription-State: terminated, or the dialog failed).
	Terminated(reason string)
}
