package call

import (
	"slices"
	"testing"
)

func TestFragmentLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a=mid:0\r\n" + cand1 + "\r\na=end-of-candidates\r\n", []string{"a=mid:0", cand1, "a=end-of-candidates"}},
		// wsc.js-era concatenation of browser candidate strings.
		{"a=mid:audio\r\ncandidate:1 1 udp 1 192.0.2.1 1 typ hostcandidate:2 1 udp 1 192.0.2.2 2 typ host\n",
			[]string{"a=mid:audio", "a=candidate:1 1 udp 1 192.0.2.1 1 typ host", "a=candidate:2 1 udp 1 192.0.2.2 2 typ host"}},
		{cand1 + cand2, []string{cand1, cand2}},
		// Nothing else passes toward SIP.
		{"a=mid:\r\nm=audio 9 RTP/AVP 0\r\na=ice-ufrag:x\r\nb=AS:1\r\n", nil},
	} {
		if got := fragmentLines(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("fragmentLines(%q)\n= %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestSDPFrag(t *testing.T) {
	local := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=mid:a\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\nm=video 9 RTP/AVP 96\r\na=mid:v\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n"
	got := sdpfrag(local, []string{"a=mid:v", cand1, "a=mid:x", cand2, "a=end-of-candidates", "a=end-of-candidates"})
	want := "m=video 9 RTP/AVP 96\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=mid:v\r\n" + cand1 + "\r\na=mid:x\r\n" + cand2 + "\r\na=end-of-candidates\r\n"
	if got != want {
		t.Errorf("sdpfrag\n%q\nwant\n%q", got, want)
	}
}

func TestWebFragment(t *testing.T) {
	body := "a=ice-ufrag:u\r\na=ice-pwd:p\r\na=end-of-candidates\r\nm=audio 9 RTP/AVP 0\r\na=mid:a\r\n" + cand1 +
		"\r\nm=video 9 RTP/AVP 96\r\na=mid:v\r\nm=text 9 RTP/AVP 98\r\n" + cand2 + "\r\n"
	want := "a=mid:a\r\n" + cand1 + "\r\na=end-of-candidates\r\na=mid:v\r\na=end-of-candidates\r\n"
	if got := webFragment(body); got != want {
		t.Errorf("webFragment\n%q\nwant\n%q", got, want)
	}
	if got := webFragment("m=audio 9 RTP/AVP 0\r\n" + cand1 + "\r\n"); got != "" {
		t.Errorf("candidates without a mid: %q", got)
	}
}

func TestFoldCandidates(t *testing.T) {
	sdp := "v=0\r\ns=-\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" + cand1 + "\r\nm=video 9 RTP/AVP 96\r\na=mid:1\r\n"
	got := foldCandidates(sdp, []string{"a=mid:0", cand1, cand2, "a=end-of-candidates", "a=mid:2", cand2})
	want := "v=0\r\ns=-\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" + cand1 + "\r\n" + cand2 + "\r\na=end-of-candidates\r\nm=video 9 RTP/AVP 96\r\na=mid:1\r\n"
	if got != want {
		t.Errorf("foldCandidates\n%q\nwant\n%q", got, want)
	}
}
