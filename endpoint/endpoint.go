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

// RouteBasis is what a Router's decisions read of its session besides
// its identity and address: kept with a SIP call's record, it lets the
// call's header rules be bound again once the session is gone (the BYE
// of a dialog nobody continues, docs/cluster.md "SIP dialogs").
type RouteBasis struct {
	Application string `json:"app,omitempty"`
	Guest       bool   `json:"guest,omitempty"`
}

// BasisOf returns ep's RouteBasis: the zero one for an endpoint that
// has none (no Router, or a session on another node).
func BasisOf(ep Endpoint) RouteBasis {
	if b, ok := ep.(interface{ RouteBasis() RouteBasis }); ok {
		return b.RouteBasis()
	}
	return RouteBasis{}
}

// Origin names the client frame whose processing relays a frame to
// another session: the sending session and the sequence its client gave
// that frame. A client resends a frame whose processing its gateway did
// not make durable (in a cluster, a node that died after relaying it
// but before writing the sender's state): the receiver recognises the
// relay it already took by its origin (docs/cluster.md, "A relay is
// taken once"). The zero Origin names nothing.
type Origin struct {
	Session  string
	Sequence uint64
	// Stream names the sender's interaction whose relays reach a
	// receiver in the order its client numbered them, apart from the
	// sender's other relays: a call's frames go through the call's host,
	// which may be another node than the sender's, while its messages
	// and starts leave from the sender's own node. "" for those.
	Stream string
	// Part numbers the relays of one client frame to one session: a
	// callee's answer brings the caller the answer, then the candidates
	// the callee sent while its fork rang.
	Part uint64
	// Corr is the correlation id of the client frame (its report's, for
	// a message): the receiver's node reports to the sender itself when
	// the message's node died (docs/cluster.md "Delivery reports").
	Corr string
}

// OriginOf is the origin of a relay of f, a frame from's client sent
// from its own node (a message's send, a call's start).
func OriginOf(from Endpoint, f *protocol.Frame) Origin {
	return Origin{Session: from.ID(), Sequence: f.Control.Sequence, Corr: protocol.ClientCorrelation(f)}
}

// CallOrigin is the origin of a relay of f, a frame from's client sent
// in a call, by the call's host: its stream is the call's subsession on
// from's side.
func CallOrigin(from Endpoint, f *protocol.Frame) Origin {
	return Origin{Session: from.ID(), Sequence: f.Control.Sequence, Stream: f.Control.SubsessionID}
}

// Relayer is implemented by endpoints that recognise a relay sent
// again: a Relay whose origin is one they took already sends nothing
// and returns the sequence the frame got the first time.
type Relayer interface {
	Relay(f *protocol.Frame, selfCorrelate bool, o Origin) (uint64, error)
}

// Relay sends f to ep as the relay of the client frame o names: once,
// however often o is relayed, when ep is a Relayer (one relay of an
// origin to a session at most: a second would be taken for the first).
func Relay(ep Endpoint, f *protocol.Frame, selfCorrelate bool, o Origin) (uint64, error) {
	if r, ok := ep.(Relayer); ok && o.Session != "" && o.Sequence != 0 {
		return r.Relay(f, selfCorrelate, o)
	}
	return ep.Send(f, selfCorrelate)
}

// Quota is implemented by endpoints whose concurrent calls are limited.
// A caller over its quota gets 503; a callee over its quota is busy.
type Quota interface {
	AcquireCall() bool
	ReleaseCall()
}

// Recounter is implemented by Quota endpoints that count a call admitted
// before (an adopted one) without admitting it again: in a cluster, an
// admission may reserve the call in the store, which an adoption must
// not wait on.
type Recounter interface {
	RecountCall() bool
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

// Finder is implemented by Directories whose Sessions may have to read a
// store that can fail to answer (a cluster's directory bucket): Find
// returns the sessions, or the error that kept the directory from
// telling whether identity has any.
type Finder interface {
	Find(identity string) ([]Endpoint, error)
}

// ErrLookup is the reason given for a target whose sessions could not be
// looked up: retryable, unlike "unknown target" (docs/protocol.md).
const ErrLookup = "target's sessions could not be looked up; try again"

// Find returns identity's sessions in dir, and an error when dir could
// not tell whether it has any (Finder): a caller then answers the target
// 480 with ErrLookup, never 404, which is final for a user who is online.
func Find(dir Directory, identity string) ([]Endpoint, error) {
	if f, ok := dir.(Finder); ok {
		return f.Find(identity)
	}
	return dir.Sessions(identity), nil
}

// Holder is implemented by Directories of a cluster, where a node can
// die with sessions whose clients will resume on another: FindHeld is
// Find with those sessions too, whose frames their sender holds for the
// resume, up to a bound (a message: docs/cluster.md "A dead node").
type Holder interface {
	FindHeld(identity string) ([]Endpoint, error)
}

// FindHeld is Find with the sessions of dead nodes whose clients have not
// resumed yet (Holder), for a frame that may wait for them.
func FindHeld(dir Directory, identity string) ([]Endpoint, error) {
	if h, ok := dir.(Holder); ok {
		return h.FindHeld(identity)
	}
	return Find(dir, identity)
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
