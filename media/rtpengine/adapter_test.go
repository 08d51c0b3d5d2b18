package rtpengine

import (
	"reflect"
	"testing"
)

const (
	plainSDP  = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"
	webrtcSDP = "v=0\r\na=fingerprint:sha-256 AA\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:x\r\n"
)

// TestAdapterPolicy: which calls go through rtpengine, and that a call
// that does not leaves its SDP untouched and sends rtpengine nothing.
func TestAdapterPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy Policy
		dir    Direction
		offer  string
		anchor bool
	}{
		{PolicyNever, WebToSIP, webrtcSDP, false},
		{PolicyNever, SIPToWeb, plainSDP, false},
		{PolicyAlways, WebToSIP, webrtcSDP, true},
		{PolicyAlways, SIPToWeb, webrtcSDP, true},
		{PolicyAuto, WebToSIP, webrtcSDP, true},
		{PolicyAuto, SIPToWeb, plainSDP, true},
		{PolicyAuto, SIPToWeb, webrtcSDP, false},
		// ICE without DTLS (or the reverse) is no WebRTC media.
		{PolicyAuto, SIPToWeb, "v=0\r\na=ice-ufrag:x\r\nm=audio 4000 RTP/SAVP 0\r\n", true},
		{PolicyAuto, SIPToWeb, "v=0\r\na=fingerprint:sha-256 AA\r\nm=audio 4000 UDP/TLS/RTP/SAVP 0\r\n", true},
	} {
		f := newFakeNG(t, ok)
		c := dialFake(t, f, nil)
		a, err := NewAdapter(c, tc.policy)
		if err != nil {
			t.Fatal(err)
		}
		s, out, err := a.Offer(t.Context(), tc.dir, Keys{CallID: "c", FromTag: "f"}, tc.offer)
		if err != nil {
			t.Fatal(err)
		}
		ans, err := s.Answer(t.Context(), "t", "answer")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
		var cmds []string
		for _, r := range f.requests() {
			cmds = append(cmds, r["command"].(string))
		}
		if s.Anchored() != tc.anchor {
			t.Errorf("%s %v %q: anchored %v, want %v", tc.policy, tc.dir, tc.offer, s.Anchored(), tc.anchor)
		}
		if tc.anchor {
			if out != "rewritten offer" || ans != "rewritten answer" || !reflect.DeepEqual(cmds, []string{"offer", "answer", "delete"}) {
				t.Errorf("%s %v: offer %q answer %q commands %v", tc.policy, tc.dir, out, ans, cmds)
			}
		} else if out != tc.offer || ans != "answer" || len(cmds) != 0 {
			t.Errorf("%s %v: not anchored but offer %q answer %q commands %v", tc.policy, tc.dir, out, ans, cmds)
		}
	}
}

// TestAdapterFlags: the offer is converted for the side it goes to, the
// answer for the side it returns to, with the fork's keys.
func TestAdapterFlags(t *testing.T) {
	for _, tc := range []struct {
		dir                  Direction
		offerProto, ansProto string
	}{
		{WebToSIP, "RTP/AVP", "UDP/TLS/RTP/SAVPF"},
		{SIPToWeb, "UDP/TLS/RTP/SAVPF", "RTP/AVP"},
	} {
		f := newFakeNG(t, ok)
		a, _ := NewAdapter(dialFake(t, f, nil), PolicyAlways)
		keys := Keys{CallID: "c", FromTag: "f", ViaBranch: "z9hG4bK1"}
		s, _, err := a.Offer(t.Context(), tc.dir, keys, webrtcSDP)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reoffer(t.Context(), webrtcSDP); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Answer(t.Context(), "fork2", plainSDP); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteFork(t.Context(), "fork1"); err != nil {
			t.Fatal(err)
		}
		r := f.requests()
		offer, reoffer, answer, del := r[0], r[1], r[2], r[3]
		// The answer keeps the offerer's protocol: no transport-protocol,
		// no SDES.
		if offer["transport-protocol"] != tc.offerProto || reoffer["transport-protocol"] != tc.offerProto || answer["transport-protocol"] != nil || answer["SDES"] != nil {
			t.Errorf("%v: offer %v, re-offer %v, answer %v", tc.dir, offer["transport-protocol"], reoffer["transport-protocol"], answer["transport-protocol"])
		}
		toPhone, toWeb := offer, answer
		if tc.dir == SIPToWeb {
			toPhone, toWeb = answer, offer
		}
		if toPhone["ICE"] != "remove" || toPhone["DTLS"] != "off" || !reflect.DeepEqual(toPhone["rtcp-mux"], []any{"demux"}) {
			t.Errorf("%v: toward the phone %#v", tc.dir, toPhone)
		}
		if tc.dir == SIPToWeb && !reflect.DeepEqual(offer["SDES"], []any{"off"}) {
			t.Errorf("offer toward the browser keeps SDES: %#v", offer)
		}
		if toWeb["ICE"] != "force" || !reflect.DeepEqual(toWeb["rtcp-mux"], []any{"offer", "require"}) {
			t.Errorf("%v: toward the browser %#v", tc.dir, toWeb)
		}
		if offer["via-branch"] != "z9hG4bK1" || offer["to-tag"] != nil || answer["to-tag"] != "fork2" || answer["from-tag"] != "f" {
			t.Errorf("%v: keys offer %#v answer %#v", tc.dir, offer, answer)
		}
		if del["command"] != "delete" || del["to-tag"] != "fork1" || del["delete-delay"] != int64(0) {
			t.Errorf("%v: fork delete %#v", tc.dir, del)
		}
	}
}

// TestAdapterNoSDP: an "ok" without SDP is an error, not an empty body
// for the other side.
func TestAdapterNoSDP(t *testing.T) {
	f := newFakeNG(t, func(*fakeNG, string, map[string]any, int) map[string]any {
		return map[string]any{"result": "ok"}
	})
	a, _ := NewAdapter(dialFake(t, f, nil), PolicyAlways)
	if _, out, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c", FromTag: "f"}, webrtcSDP); err == nil {
		t.Fatalf("offer answered without SDP gave %q and no error", out)
	}
}

func TestPolicyValidate(t *testing.T) {
	if _, err := NewAdapter(nil, "sometimes"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

// TestAdapterReofferFromAnswerer: a re-offer from the side that answered
// (a phone's hold in a call a browser made) names that side's tag as the
// from-tag, converts the offer for the first offerer's side and its
// answer back, and carries no Via branch of the first INVITE.
func TestAdapterReofferFromAnswerer(t *testing.T) {
	for _, tc := range []struct {
		dir                  Direction // of the first offer
		offerProto, ansProto string    // of the re-offer toward the first offerer, of its answer toward the answerer
	}{
		{WebToSIP, "UDP/TLS/RTP/SAVPF", "RTP/AVP"},
		{SIPToWeb, "RTP/AVP", "UDP/TLS/RTP/SAVPF"},
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
		back := 1 - tc.dir
		if _, err := s.OfferFrom(t.Context(), back, plainSDP); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AnswerTo(t.Context(), back, webrtcSDP); err != nil {
			t.Fatal(err)
		}
		r := f.requests()
		ro, ra := r[2], r[3]
		if ro["command"] != "offer" || ro["from-tag"] != "t" || ro["to-tag"] != "f" || ro["via-branch"] != nil || ro["transport-protocol"] != tc.offerProto {
			t.Errorf("%v: re-offer %#v", tc.dir, ro)
		}
		if ra["command"] != "answer" || ra["from-tag"] != "t" || ra["to-tag"] != "f" || ra["transport-protocol"] != nil {
			t.Errorf("%v: its answer %#v", tc.dir, ra)
		}
		// The answer goes toward the side that re-offered: ICE removed
		// toward a phone, forced toward a browser.
		wantICE := "force"
		if tc.ansProto == "RTP/AVP" {
			wantICE = "remove"
		}
		if ra["ICE"] != wantICE {
			t.Errorf("%v: answer ICE %v, want %v", tc.dir, ra["ICE"], wantICE)
		}
	}
}

// TestAdapterSDES: a browser's offer toward an SDES target goes to the
// phone as RTP/SAVP with rtpengine's crypto (no SDES: off), and so does
// its re-offer; a phone that called with SDES gets the browser's
// re-offer (hold) as RTP/SAVP too, not as RTP/AVP, which would strip its
// crypto. A plain phone's call stays RTP/AVP.
func TestAdapterSDES(t *testing.T) {
	const sdesSDP = "v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
	for _, tc := range []struct {
		name  string
		offer func(a *Adapter) (*Session, string, error)
		proto string
	}{
		{"browser to SDES target", func(a *Adapter) (*Session, string, error) {
			return a.OfferSDES(t.Context(), Keys{CallID: "c", FromTag: "f"}, webrtcSDP)
		}, "RTP/SAVP"},
		{"SDES phone to browser", func(a *Adapter) (*Session, string, error) {
			return a.Offer(t.Context(), SIPToWeb, Keys{CallID: "c", FromTag: "f"}, sdesSDP)
		}, "RTP/SAVP"},
		{"plain phone to browser", func(a *Adapter) (*Session, string, error) {
			return a.Offer(t.Context(), SIPToWeb, Keys{CallID: "c", FromTag: "f"}, plainSDP)
		}, "RTP/AVP"},
	} {
		f := newFakeNG(t, ok)
		a, _ := NewAdapter(dialFake(t, f, nil), PolicyAlways)
		s, _, err := tc.offer(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Answer(t.Context(), "t", plainSDP); err != nil {
			t.Fatal(err)
		}
		if _, err := s.OfferFrom(t.Context(), WebToSIP, webrtcSDP); err != nil {
			t.Fatal(err)
		}
		var toPhone []map[string]any
		for _, r := range f.requests() {
			if r["command"] == "offer" && r["ICE"] == "remove" {
				toPhone = append(toPhone, r)
			}
		}
		if len(toPhone) == 0 {
			t.Fatalf("%s: no offer toward the phone", tc.name)
		}
		for _, r := range toPhone {
			if r["transport-protocol"] != tc.proto {
				t.Errorf("%s: offer toward the phone as %v, want %s", tc.name, r["transport-protocol"], tc.proto)
			}
			if sdesOff := reflect.DeepEqual(r["SDES"], []any{"off"}); sdesOff != (tc.proto == "RTP/AVP") {
				t.Errorf("%s: SDES %v toward a %s phone", tc.name, r["SDES"], tc.proto)
			}
		}
	}
}

// TestAdapterRetrySDES: a browser's call anchored by the auto policy
// offers the phone SDES-SRTP once after a refusal, on the same call and
// tags (RTP/SAVP, rtpengine's crypto), and so do its later offers; a
// call anchored by always, or SDES already, does not retry.
func TestAdapterRetrySDES(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy Policy
		route  Route
		retry  bool
	}{
		{"auto", PolicyAuto, Route{}, true},
		{"a route's auto", PolicyAlways, Route{Policy: PolicyAuto}, true},
		{"always", PolicyAlways, Route{}, false},
		{"SDES already", PolicyAuto, Route{SDES: true}, false},
	} {
		f := newFakeNG(t, ok)
		a, _ := NewAdapter(dialFake(t, f, nil), tc.policy)
		s, _, err := a.OfferRoute(t.Context(), WebToSIP, Keys{CallID: "c", FromTag: "f"}, webrtcSDP, tc.route)
		if err != nil {
			t.Fatal(err)
		}
		_, retried, err := s.RetrySDES(t.Context(), webrtcSDP)
		if err != nil || retried != tc.retry {
			t.Fatalf("%s: RetrySDES %v %v, want %v", tc.name, retried, err, tc.retry)
		}
		if _, again, _ := s.RetrySDES(t.Context(), webrtcSDP); again {
			t.Fatalf("%s: a second retry", tc.name)
		}
		if !tc.retry {
			continue
		}
		if _, err := s.OfferFrom(t.Context(), WebToSIP, webrtcSDP); err != nil {
			t.Fatal(err)
		}
		reqs := f.requests()
		if len(reqs) != 3 {
			t.Fatalf("%s: %d commands, want the offer, the retry and the re-offer", tc.name, len(reqs))
		}
		for i, r := range reqs[1:] {
			if r["command"] != "offer" || r["call-id"] != "c" || r["from-tag"] != "f" || r["transport-protocol"] != "RTP/SAVP" || r["SDES"] != nil {
				t.Errorf("%s: command %d after the refusal %v", tc.name, i+2, r)
			}
		}
		if reqs[0]["transport-protocol"] != "RTP/AVP" {
			t.Errorf("%s: first offer %v", tc.name, reqs[0]["transport-protocol"])
		}
	}
}

// TestAdapterRollback: after a re-offer that failed on its way (never
// answered), Rollback sends rtpengine the offer/answer in force again:
// the first exchange, or the last answered re-offer, whichever side made
// it; before any answer it sends nothing.
func TestAdapterRollback(t *testing.T) {
	const hold = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n"
	f := newFakeNG(t, ok)
	a, _ := NewAdapter(dialFake(t, f, nil), PolicyAlways)
	s, _, err := a.Offer(t.Context(), WebToSIP, Keys{CallID: "c", FromTag: "f"}, webrtcSDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(t.Context()); err != nil || len(f.requests()) != 1 {
		t.Fatalf("rollback before any answer: %v, %d requests", err, len(f.requests()))
	}
	if _, err := s.Answer(t.Context(), "t", plainSDP); err != nil {
		t.Fatal(err)
	}
	check := func(n int, dir Direction, offer, answer string) {
		t.Helper()
		if _, err := s.OfferFrom(t.Context(), dir, hold); err != nil {
			t.Fatal(err)
		}
		if err := s.Rollback(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := f.requests()
		if len(r) != n+3 {
			t.Fatalf("%d requests, want %d", len(r), n+3)
		}
		ro, ra := r[n+1], r[n+2]
		if ro["command"] != "offer" || ro["sdp"] != offer || ra["command"] != "answer" || ra["sdp"] != answer {
			t.Errorf("rollback sent %v %q, %v %q; want offer %q, answer %q", ro["command"], ro["sdp"], ra["command"], ra["sdp"], offer, answer)
		}
	}
	check(2, WebToSIP, webrtcSDP, plainSDP)
	// The phone's re-offer, answered, is the exchange in force.
	if _, err := s.OfferFrom(t.Context(), SIPToWeb, plainSDP); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AnswerTo(t.Context(), SIPToWeb, webrtcSDP); err != nil {
		t.Fatal(err)
	}
	check(7, SIPToWeb, plainSDP, webrtcSDP)
	// An answer from the phone with no re-offer before it (sipgw
	// offered it the browser's last SDP again): the browser's answer is
	// the offer in force now.
	const phone2 = "v=0\r\nm=audio 4002 RTP/AVP 0\r\n"
	if _, err := s.AnswerTo(t.Context(), WebToSIP, phone2); err != nil {
		t.Fatal(err)
	}
	check(11, WebToSIP, webrtcSDP, phone2)
}
