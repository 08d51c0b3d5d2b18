package client

import (
	"slices"
	"testing"
	"testing/synctest"

	"github.com/jsonrtc/jsonrtc/protocol"
)

func TestMediaKinds(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	for _, tc := range []struct {
		sdp  string
		want []string
	}{
		{head + "m=audio 9 RTP/AVP 0\r\n", []string{"audio"}},
		{head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", []string{"audio", "video"}},
		{head + "m=audio 49170 RTP/AVP 0\r\nm=audio 49172 RTP/AVP 8\r\nm=video 0 RTP/AVP 31\r\n", []string{"audio"}},
		{"", nil},
		{"not sdp", nil},
	} {
		if got := mediaKinds(tc.sdp); !slices.Equal(got, tc.want) {
			t.Errorf("mediaKinds(%q) = %v, want %v", tc.sdp, got, tc.want)
		}
	}
}

// An incoming video offer makes a video call: Kinds and Video say so.
func TestIncomingVideoCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.identity = "bob@example.com"
		c := dial(t, f, nil)
		start := srvCall(protocol.TypeRequest, "s1", "s2", protocol.ActionStart)
		start.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\nm=video 9 RTP/AVP 96\r\n"})
		f.send(start, false)
		ev := nextEvent(t, c)
		if ev.Kind != EventIncomingCall {
			t.Fatalf("event %v", ev)
		}
		if k := ev.Call; !slices.Equal(k.Kinds(), []string{"audio", "video"}) || !k.Video() {
			t.Fatalf("kinds %v video %v", k.Kinds(), k.Video())
		}
	})
}
