// Package protocol defines JSONrtc frames: their types, a JSON codec and
// the validation every frame passes before anything acts on it.
//
// It does no I/O and imports nothing else of this project, so every other
// package (the gateway, the session machine, the Go client, the load tool)
// shares one definition of the wire. The wire contract is
// docs/protocol.md; where it is silent, the observed behaviour of the
// Oracle WebRTC Session Controller SDK 1.0 decides.
//
// Start with [Decode] and [Frame.Append]. Decode is a hand-written scanner
// rather than encoding/json: it is on the path of every relayed frame, it
// must name the offending field in its errors (they go back to the client
// as error 400), and it keeps the payload as raw bytes so that an SDP or a
// chat body is relayed without being decoded and encoded again.
package protocol
