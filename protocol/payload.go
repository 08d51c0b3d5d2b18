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
