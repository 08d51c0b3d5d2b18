// Package endpoint is what the package handlers (call, messaging,
// presence, notification) need of a web session: to send it frames
// ([Endpoint]), to find the sessions of an identity ([Directory]), and
// to count its calls ([Quota]). The gateway's sessions implement it; the
// handlers know no socket and none of each other.
package endpoint

import (
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Endpoint is a live web session as package handlers see it.
type Endpoint interface {
	// ID is the session id.
	ID() string
	// Identity is who the session runs as.
	Identity() string
	// Oracle reports whether the client speaks webrtc.oracle.com (no
	// protocol extensions may be sent to it).
	Oracle() bool
	// Send stamps, retains and queues f. With selfCorrelate the frame's
	// correlation_id becomes "s<its sequence>". It returns the sequence.
	// A full window ends the session; Send then returns an error and the
	// handler carries on as if the session had ended.
	Send(f *protocol.Frame, selfCorrelate bool) (uint64, error)
}

// Quota is implemented by endpoints whose concurrent calls are limited.
// A caller over its quota gets 503; a callee over its quota is busy.
type Quota interface {
	AcquireCall() bool
	ReleaseCall()
}

// Directory finds sessions by identity.
type Directory interface {
	// Sessions returns the live sessions of identity: connected ones and
	// ones waiting for a resume.
	Sessions(identity string) []Endpoint
	// Known reports whether identity is a web identity that only web
	// sessions reach (it has had a session, and no SIP side serves it),
	// to tell 480 (offline) from 404 (unknown). Whether a target is on
	// the web is decided by Sessions, per request: an identity that is
	// not Known and has no live session goes to SIP when it routes there.
	Known(identity string) bool
}

// Router is implemented by endpoints whose requests are routed by rules
// (package routing, docs/routing.md): the handlers ask it where a call,
// message or subscription of the session goes before they relay it or
// send it to SIP.
type Router interface {
	Route(kind routing.Kind, target string, ext []protocol.Ext) routing.Decision
}

// Route decides where ep's request to target, with the extension headers
// ext, goes: its Router's decision, or the built-in profile for an
// endpoint without one.
func Route(ep Endpoint, kind routing.Kind, target string, ext []protocol.Ext) routing.Decision {
	if r, ok := ep.(Router); ok {
		return r.Route(kind, target, ext)
	}
	return routing.Decision{Action: routing.ActionBuiltin, Rule: "default", Target: target}
}
