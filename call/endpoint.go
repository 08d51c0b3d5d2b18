// Package call is the web-side state machine of the call package
// (docs/protocol.md §5): it relays calls between web sessions, mapping
// subsession and correlation ids between the two sides as the reference
// transcripts show, and forks an incoming call to every live session of
// the callee (first answer wins, the others get shutdown).
//
// The gateway feeds it frames with [Handler.HandleFrame] and tells it of
// ended sessions with [Handler.SessionEnded]; it answers through the
// [endpoint.Endpoint] interface, so it knows no socket.
package call

import (
	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// Endpoint and Directory are package endpoint's, under the names this
// package's code has always used; other packages name them endpoint.*.
type (
	Endpoint  = endpoint.Endpoint
	Directory = endpoint.Directory
)

func acquireCall(ep Endpoint) bool {
	if q, ok := ep.(endpoint.Quota); ok {
		return q.AcquireCall()
	}
	return true
}

// recountCall counts a call admitted before (restored) in ep's quota: no
// admission again (Recounter), where ep can tell.
func recountCall(ep Endpoint) bool {
	if r, ok := ep.(endpoint.Recounter); ok {
		return r.RecountCall()
	}
	return acquireCall(ep)
}

// acquireEach takes a call from each of eps's quotas, before the call's
// lock is taken: a quota in a cluster may reserve the call in the store
// (a round trip of up to seconds), which must not hold the call's other
// frames and the handler's sweeps of its calls (docs/cluster.md
// "Limits"). held[i] says whether eps[i]'s was taken.
func acquireEach(eps []Endpoint) (held []bool) {
	held = make([]bool, len(eps))
	for i, e := range eps {
		held[i] = acquireCall(e)
	}
	return held
}

// releaseEach gives back what acquireEach took.
func releaseEach(eps []Endpoint, held []bool) {
	for i, e := range eps {
		if held[i] {
			releaseCall(e)
		}
	}
}

func releaseCall(ep Endpoint) {
	if q, ok := ep.(endpoint.Quota); ok {
		q.ReleaseCall()
	}
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
