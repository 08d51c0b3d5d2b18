// Package session is the reliability machine of JSONrtc (docs/protocol.md
// §3 and §4): per-direction sequence numbers, cumulative acks, a
// bounded retained window, duplicate suppression and the resume criteria.
//
// It knows no socket and no SIP. A [State] is one end of one session, as a
// plain value that can be stored or replicated; its methods are the
// transitions. The gateway runs one per client session and the Go client
// runs one per connection, so both ends share the same machine.
//
// State is not safe for concurrent use: its owner serialises access.
package session
