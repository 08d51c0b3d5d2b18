package call

import (
	"os"
	"strings"
	"testing"
)

func readSDP(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// What browsers and common SIP peers send passes; what no SDP grammar
// allows fails with a reason that names the problem.
func TestParseSDP(t *testing.T) {
	chrome := readSDP(t, "chrome_offer.sdp")
	for _, tc := range []struct {
		name, sdp string
		media     int    // media sections, when it parses
		reason    string // part of the error, when it must not
	}{
		{"chrome", chrome, 2, ""},
		{"firefox", readSDP(t, "firefox_offer.sdp"), 2, ""},
		{"asterisk", readSDP(t, "asterisk_offer.sdp"), 2, ""},
		{"sipp", readSDP(t, "sipp_uac.sdp"), 1, ""},
		{"bare LF", strings.ReplaceAll(chrome, "\r\n", "\n"), 2, ""},
		{"no last line end", strings.TrimSuffix(chrome, "\r\n"), 2, ""},
		{"the unit tests' web offer", webOffer, 1, ""},
		{"empty", "", 0, "no SDP"},
		{"not SDP", "hello world", 0, "no SDP"},
		{"version only", "v=0\r\na=x\r\n", 0, `line 2: "a=x"`},
		// pion ends without complaint where the input does.
		{"ends after s=", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=a=\r\n", 0, "no t= line"},
		{"no t=", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 9 RTP/AVP 0\r\n", 0, `line 4: "m=audio 9 RTP/AVP 0"`},
		{"version 1", strings.Replace(chrome, "v=0", "v=1", 1), 0, "invalid value `1`"},
		{"port out of range", strings.Replace(chrome, "m=audio 49203", "m=audio 99999", 1), 0, "invalid port value `99999`"},
		{"unknown media", strings.Replace(chrome, "m=video", "m=vidoe", 1), 0, "invalid value `vidoe`"},
		{"no formats", strings.Replace(chrome, "RTP/SAVPF 111 63 9 0 8 13 110 126", "RTP/SAVPF", 1), 0, "m= line 1 has no formats"},
		{"garbage line", strings.Replace(chrome, "a=rtcp-mux\r\n", "rtcp-mux\r\n", 1), 0, `"rtcp-mux"`},
		{"indented line", strings.Replace(chrome, "a=setup:actpass", " a=setup:actpass", 1), 0, "syntax error"},
		{"bad origin", strings.Replace(chrome, "IN IP4 127.0.0.1", "IN IP5 127.0.0.1", 1), 0, "invalid value `IP5`"},
		{"truncated", chrome[:len(chrome)/2] + "\r\nm=audio\r\n", 0, "invalid port value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseSDP(tc.sdp)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(d.MediaDescriptions) != tc.media {
					t.Fatalf("%d media sections, want %d", len(d.MediaDescriptions), tc.media)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			r := sdpReason(err)
			if !strings.Contains(r, tc.reason) || len(r) > maxSDPReason {
				t.Fatalf("reason %q, want it to name %q", r, tc.reason)
			}
		})
	}
}

// What parses marshals again, and parses to the same (pion's own
// fuzz property, on what this gateway passes on).
func FuzzParseSDP(f *testing.F) {
	for _, n := range []string{"chrome_offer.sdp", "firefox_offer.sdp", "asterisk_offer.sdp", "sipp_uac.sdp"} {
		f.Add(readSDP(f, n))
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseSDP(s)
		if err != nil {
			return
		}
		if got := iceUfrag(d); strings.ContainsAny(got, "\r\n") {
			t.Fatalf("ufrag %q", got)
		}
		_, _ = webFragment([]byte(s))
	})
}

// The check costs a parse per offer or answer (call setup, never per
// frame).
func BenchmarkParseSDPChromeOffer(b *testing.B) {
	s := readSDP(b, "chrome_offer.sdp")
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := parseSDP(s); err != nil {
			b.Fatal(err)
		}
	}
}
