package call

import (
	"slices"
	"testing"

	sdp "github.com/pion/sdp/v3"
)

// attrLines renders attributes as the a= lines they stand for.
func attrLines(attrs []sdp.Attribute) []string {
	var out []string
	for _, a := range attrs {
		out = append(out, "a="+a.String())
	}
	return out
}

// mustParse parses an SDP a test relies on.
func mustParse(t *testing.T, s string) *sdp.SessionDescription {
	t.Helper()
	d, err := parseSDP(s)
	if err != nil {
		t.Fatalf("parseSDP: %v", err)
	}
	return d
}

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
		{"a=mid:\r\nm=audio 9 RTP/AVP 0\r\na=ice-ufrag:x\r\nb=AS:1\r\nmid:0\r\nend-of-candidates\r\na=candidate:\r\n", nil},
	} {
		if got := attrLines(fragmentAttrs(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("fragmentAttrs(%q)\n= %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestSDPFrag(t *testing.T) {
	local := mustParse(t, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=mid:a\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\nm=video 9 RTP/AVP 96\r\na=mid:v\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n")
	got := string(sdpfrag(local, fragmentAttrs("a=mid:v\r\n"+cand1+"\r\na=mid:x\r\n"+cand2+"\r\na=end-of-candidates\r\na=end-of-candidates\r\n")))
	want := "m=video 9 RTP/AVP 96\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=mid:v\r\n" + cand1 + "\r\na=mid:x\r\n" + cand2 + "\r\na=end-of-candidates\r\n"
	if got != want {
		t.Errorf("sdpfrag\n%q\nwant\n%q", got, want)
	}
	// Session-level credentials lead; a mid before any a=mid goes first.
	local = mustParse(t, webOffer)
	got = string(sdpfrag(local, fragmentAttrs(cand2+"\r\na=mid:0\r\n"+cand1+"\r\n")))
	want = "a=ice-ufrag:U1\r\na=ice-pwd:P1\r\n" + cand2 + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" + cand1 + "\r\n"
	if got != want {
		t.Errorf("sdpfrag\n%q\nwant\n%q", got, want)
	}
}

func TestWebFragment(t *testing.T) {
	body := "a=ice-ufrag:u\r\na=ice-pwd:p\r\na=end-of-candidates\r\nm=audio 9 RTP/AVP 0\r\na=mid:a\r\n" + cand1 +
		"\r\nm=video 9 RTP/AVP 96\r\na=mid:v\r\nm=text 9 RTP/AVP 98\r\n" + cand2 + "\r\n"
	want := "a=mid:a\r\n" + cand1 + "\r\na=end-of-candidates\r\na=mid:v\r\na=end-of-candidates\r\n"
	if got, err := webFragment([]byte(body)); err != nil || got != want {
		t.Errorf("webFragment\n%q (%v)\nwant\n%q", got, err, want)
	}
	if got, err := webFragment([]byte("m=audio 9 RTP/AVP 0\r\n" + cand1 + "\r\n")); err != nil || got != "" {
		t.Errorf("candidates without a mid: %q (%v)", got, err)
	}
	// A candidate before its section's a=mid, and a body without its
	// last line end, as peers send them.
	if got, err := webFragment([]byte("m=audio 9 RTP/AVP 0\n" + cand1 + "\na=mid:0\na=end-of-candidates")); err != nil ||
		got != "a=mid:0\r\n"+cand1+"\r\na=end-of-candidates\r\n" {
		t.Errorf("webFragment %q (%v)", got, err)
	}
	// What no SDP grammar allows is refused, not half read.
	for _, bad := range []string{"hello\r\n", "m=audio x RTP/AVP 0\r\na=mid:0\r\n" + cand1 + "\r\n", "v=0\r\n" + cand1 + "\r\n"} {
		if got, err := webFragment([]byte(bad)); err == nil {
			t.Errorf("webFragment(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFoldCandidates(t *testing.T) {
	src := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" + cand1 + "\r\nm=video 9 RTP/AVP 96\r\na=mid:1\r\n"
	got, err := foldCandidates(mustParse(t, src), fragmentAttrs("a=mid:0\r\n"+cand1+"\r\n"+cand2+"\r\na=end-of-candidates\r\na=mid:2\r\n"+cand2+"\r\n"))
	want := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" + cand1 + "\r\n" + cand2 + "\r\na=end-of-candidates\r\nm=video 9 RTP/AVP 96\r\na=mid:1\r\n"
	if err != nil || string(got) != want {
		t.Errorf("foldCandidates\n%q (%v)\nwant\n%q", got, err, want)
	}
	// pion writes lines in RFC 8866 order, with CRLF: an offer in another
	// order or with bare LF comes out normalised, its content the same.
	src = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\na=ice-ufrag:U\nm=audio 9 RTP/AVP 0\na=mid:0\nc=IN IP4 0.0.0.0\n"
	got, err = foldCandidates(mustParse(t, src), fragmentAttrs("a=mid:0\r\n"+cand1+"\r\n"))
	want = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:U\r\nm=audio 9 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n" + cand1 + "\r\n"
	if err != nil || string(got) != want {
		t.Errorf("foldCandidates\n%q (%v)\nwant\n%q", got, err, want)
	}
}
