package protocol

import (
	"encoding/json"
	"strings"
)

// CallPayload is the payload of call frames.
type CallPayload struct {
	SDP        string `json:"sdp,omitempty"`
	Candidates string `json:"candidates,omitempty"`
	Digits     string `json:"digits,omitempty"`
	Duration   int    `json:"duration,omitempty"`
}

// ShutdownPayload is the payload of the gateway's call shutdown after
// SIP's end of a call whose media went through rtpengine: what the relay
// counted on each leg (docs/protocol.md §5.8). An extension that old
// clients ignore; kept out of CallPayload, which stays comparable.
type ShutdownPayload struct {
	Media []MediaStats `json:"media,omitempty"`
}

// MediaStats is one leg of a call as the media relay saw it over the
// call's life: the RTP it received from the leg, the packets it could not
// relay toward it, and the quality of what the leg sent, when known.
type MediaStats struct {
	Side    string        `json:"side"` // "web": the browser's leg; "sip": the phone's
	Packets uint64        `json:"packets"`
	Bytes   uint64        `json:"bytes"`
	Errors  uint64        `json:"errors"`
	Quality *MediaQuality `json:"quality,omitempty"`
	// AsOf, when set, is when the relay last reported these figures
	// (RFC 3339, UTC): the call's relay was lost, and they are not its
	// final ones (docs/protocol.md §5.8).
	AsOf string `json:"as_of,omitempty"`
}

// MediaQuality is the relay's verdict on a leg's media, from its
// receiver's RTCP reports.
type MediaQuality struct {
	MOS         float64 `json:"mos"`          // mean opinion score, 1 to 5
	JitterMS    float64 `json:"jitter_ms"`    // average interarrival jitter
	LossPercent float64 `json:"loss_percent"` // average packet loss
	Lost        uint64  `json:"lost"`         // packets lost over the call
	RTTMS       float64 `json:"rtt_ms"`       // average round-trip time
}

// PresencePayload is the payload of presence notify and publish.
type PresencePayload struct {
	Presentity string `json:"presentity,omitempty"`
	Status     string `json:"status,omitempty"` // "open" or "closed"
	Activity   string `json:"activity,omitempty"`
	Note       string `json:"note,omitempty"`
}

// MessagePayload is the payload of a messaging send.
type MessagePayload struct {
	ContentType string `json:"content_type,omitempty"`
	Body        string `json:"body"`
}

// DecodePayload decodes f's payload into v. A payload that does not fit v
// is a 400.
func DecodePayload(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return newError(CodeBadRequest, "payload is malformed: "+trimJSONErr(err))
	}
	return nil
}

// EncodePayload encodes v as a payload. v must be one of this package's
// payload types or a map of strings, which cannot fail to encode.
func EncodePayload(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

func trimJSONErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "json: ")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// HasSDP reports whether an SDP string looks like one: the SDK's own test
// is that it contains "a=" or "m=".
func HasSDP(sdp string) bool {
	return strings.Contains(sdp, "m=") || strings.Contains(sdp, "a=")
}
