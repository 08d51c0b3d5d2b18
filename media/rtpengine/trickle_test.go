package rtpengine

import (
	"slices"
	"testing"
)

// TestSessionTrickle: a browser's trickled candidates go to the call's
// instance as an offer with the fragment flag and the fragment as its
// sdp, from the browser's tag (the from-tag of a call it made, the to-tag
// of one it answered), with none of the offer's conversion flags, which
// would rewrite a whole SDP; nothing goes out for a call not anchored.
func TestSessionTrickle(t *testing.T) {
	const frag = "a=ice-ufrag:u\r\na=ice-pwd:p\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host\r\n"
	for _, tc := range []struct {
		dir      Direction
		from, to string
	}{
		{WebToSIP, "f", "t"},
		{SIPToWeb, "t", "f"},
	} {
		f := newFakeNG(t, ok)
		a, _ := NewAdapter(dialFake(t, f, nil), PolicyAlways)
		s, _, err := a.Offer(t.Context(), tc.dir, Keys{CallID: "c", FromTag: "f", ViaBranch: "z9hG4bK1"}, webrtcSDP)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Answer(t.Context(), "t", plainSDP); err != nil {
			t.Fatal(err)
		}
		if err := s.Trickle(t.Context(), frag); err != nil {
			t.Fatal(err)
		}
		r := f.requests()
		if len(r) != 3 {
			t.Fatalf("%v: %d requests", tc.dir, len(r))
		}
		got := r[2]
		flags, _ := got["flags"].([]any)
		if got["command"] != "offer" || got["call-id"] != "c" || got["from-tag"] != tc.from || got["to-tag"] != tc.to || got["sdp"] != frag || !slices.Equal(flags, []any{"fragment"}) {
			t.Errorf("%v: fragment request %#v", tc.dir, got)
		}
		for _, k := range []string{"ICE", "DTLS", "transport-protocol", "rtcp-mux", "SDES", "replace", "via-branch", "codec"} {
			if v, ok := got[k]; ok {
				t.Errorf("%v: fragment request has %s: %v", tc.dir, k, v)
			}
		}
	}

	f := newFakeNG(t, ok)
	a, _ := NewAdapter(dialFake(t, f, nil), PolicyNever)
	s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c", FromTag: "f"}, webrtcSDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Trickle(t.Context(), frag); err != nil || len(f.requests()) != 0 {
		t.Errorf("not anchored: err %v, %d requests", err, len(f.requests()))
	}
}
