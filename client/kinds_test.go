package client

import (
	"slices"
	"testing"
)

const sdpHead = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"

func TestMediaKinds(t *testing.T) {
	const head = sdpHead
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
