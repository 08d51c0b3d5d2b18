// Package call is the web-side state machine of the call package
// (docs/protocol.md §5): it relays calls between web sessions, mapping
// subsession and correlation ids between the two sides as the reference
// transcripts show, and forks an incoming call to every live session of
// the callee (first answer wins, the others get shutdown).
//
// The gateway feeds it frames with [Handler.HandleFrame] and tells it of
// ended sessions with [Handler.SessionEnded]; it answers through the
// [Endpoint] interface, so it knows no socket.
package call

import "github.com/jsonrtc/jsonrtc/protocol"

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

func acquireCall(ep Endpoint) bool {
	if q, ok := ep.(Quota); ok {
		return q.AcquireCall()
	}
	return true
}

func releaseCall(ep Endpoint) {
	if q, ok := ep.(Quota); ok {
		q.ReleaseCall()
	}
}

// Directory finds sessions by identity.
type Directory interface {
	// Sessions returns the live sessions of identity: connected ones and
	// ones waiting for a resume.
	Sessions(identity string) []Endpoint
	// Known reports whether identity exists (has had a session), to tell
	// 480 (offline) from 404 (unknown).
	Known(identity string) bool
}

// errorFrame builds an error frame answering f.
func errorFrame(f *protocol.Frame, code int, reason string) *protocol.Frame {
	if reason == "" {
		reason = protocol.Reason(code)
	}
	return &protocol.Frame{
		Control: protocol.Control{
			Type:          protocol.TypeError,
			Package:       f.EffectivePackage(),
			SubsessionID:  f.Control.SubsessionID,
			CorrelationID: protocol.ClientCorrelation(f),
		},
		Header: protocol.Header{Action: f.Header.Action, ErrorCode: code, Reason: reason,
			Initiator: f.Header.Initiator, Target: f.Header.Target},
	}
}
