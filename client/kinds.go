package client

import (
	"slices"

	sdp "github.com/pion/sdp/v3"
)

// mediaKinds lists the media an offer carries (audio, video...), each
// once, in order: its m= sections with a non-zero port (port 0 is a
// rejected or removed stream, RFC 3264 section 5.1). An offer that does
// not parse has none.
func mediaKinds(offer string) []string {
	if offer == "" {
		return nil
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return nil
	}
	var kinds []string
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Port.Value != 0 && !slices.Contains(kinds, m.MediaName.Media) {
			kinds = append(kinds, m.MediaName.Media)
		}
	}
	return kinds
}

// Kinds are the media kinds of the call's initial offer: ours on an
// outgoing call, the caller's on an incoming one (e.g. [audio video]).
// Nil when the offer had no SDP or it did not parse.
func (k *Call) Kinds() []string { return slices.Clone(k.kinds) }

// Video reports whether the call's initial offer carries video.
func (k *Call) Video() bool { return slices.Contains(k.kinds, "video") }
