package interop

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// startRTPEngine runs rtpengine in userspace (no kernel module, no
// Redis) with its ng listener and media ports in testenv's reserved range,
// and returns a client once it answers a ping.
func startRTPEngine(t *testing.T) *rtpengine.Client {
	t.Helper()
	c, _ := startRTPEngineAt(t)
	return c
}

// startRTPEngineAt is startRTPEngine that also returns the ng address.
func startRTPEngineAt(t testing.TB) (*rtpengine.Client, string) {
	t.Helper()
	return startRTPEnginePorts(t, 40)
}

// startRTPEnginePorts is startRTPEngineAt with n media ports: a call
// takes two per medium and side (RTP and RTCP), eight for a browser's
// audio and video.
func startRTPEnginePorts(t testing.TB, n int) (*rtpengine.Client, string) {
	t.Helper()
	c, addr, _ := startRTPEngineProc(t, n)
	return c, addr
}

// startRTPEngineProc is startRTPEnginePorts that also returns the process,
// for a test that kills it.
func startRTPEngineProc(t testing.TB, n int) (*rtpengine.Client, string, *proc) {
	t.Helper()
	ng := testenv.Port(t)
	media := testenv.Ports(t, n)
	c, p := startRTPEngineOn(t, ng, media, n)
	return c, "127.0.0.1:" + strconv.Itoa(ng), p
}

// startRTPEngineOn starts rtpengine on the ng port and the n media ports
// from media (reserved by the caller: a restart reuses them), and returns
// a client that has seen it answer a ping.
func startRTPEngineOn(t testing.TB, ng, media, n int) (*rtpengine.Client, *proc) {
	t.Helper()
	bin := testenv.Tool(t, "rtpengine", install("rtpengine"))
	p := start(t, "rtpengine", t.TempDir(), bin,
		// Not Debian's /etc/rtpengine/rtpengine.conf, whose fixed CLI
		// and HTTP ports two rtpengines at once would share.
		"--config-file=none",
		"--interface=127.0.0.1",
		"--listen-ng=127.0.0.1:"+strconv.Itoa(ng),
		"--table=-1", "--foreground", "--log-stderr", "--log-level=6",
		"--port-min="+strconv.Itoa(media), "--port-max="+strconv.Itoa(media+n-1),
	)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := rtpengine.Dial(ctx, "127.0.0.1:"+strconv.Itoa(ng), &rtpengine.Options{Retransmit: 100 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The first pings go out before rtpengine listens; the client
	// retransmits until it answers.
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("rtpengine does not answer ping: %v", err)
	}
	return c, p
}

// phoneAnswer is what a plain SIP phone answers to rtpengine's RTP/AVP
// offer of Chrome's audio and video: PCMU on its own port, RTCP on the
// next, video refused.
const phoneAnswer = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n" +
	"m=video 0 RTP/AVP 96\r\n"

// anchoredCall runs one call through a fresh rtpengine under the auto
// policy: offer from dir (which must be anchored), the answer that answer
// makes of the rewritten offer, delete, and checks that nothing is left.
// It returns the rewritten offer and answer.
func anchoredCall(t *testing.T, dir rtpengine.Direction, offer string, answer func(offer string) string) (string, string) {
	t.Helper()
	c := startRTPEngine(t)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAuto)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	keys := rtpengine.Keys{CallID: t.Name() + "@test", FromTag: "ft", ViaBranch: "z9hG4bK-" + t.Name()}
	s, out, err := a.Offer(ctx, dir, keys, offer)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Anchored() {
		t.Fatal("the auto policy did not anchor the call")
	}
	back, err := s.Answer(ctx, "tt", answer(out))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoCalls(t, c, keys.CallID)
	return out, back
}

// has checks that sdp has every line prefix in want and none in bad.
func has(t *testing.T, what, sdp string, want, bad []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(sdp, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, sdp)
		}
	}
	for _, b := range bad {
		if strings.Contains(sdp, b) {
			t.Errorf("%s has %q:\n%s", what, b, sdp)
		}
	}
}

// What SDP toward a browser must have, and SDP toward a phone must not.
var (
	webRTCLines = []string{"a=ice-ufrag:", "a=ice-pwd:", "a=candidate:", "a=fingerprint:sha-", "a=rtcp-mux", "a=setup:"}
	phoneLines  = []string{"a=ice-", "a=candidate:", "a=fingerprint:", "a=setup:", "SAVPF"}
)

// TestRTPEngineWebToPhone: a real Chrome offer (UDP/TLS/RTP/SAVPF, ICE,
// BUNDLE, rtcp-mux) goes through rtpengine to a plain phone as RTP/AVP
// without ICE or DTLS; the phone's plain answer comes back as a WebRTC
// answer with ICE candidates and a DTLS fingerprint; delete leaves nothing.
func TestRTPEngineWebToPhone(t *testing.T) {
	offer, answer := anchoredCall(t, rtpengine.WebToSIP, chromeSDP(t, "chrome_offer.sdp"), func(string) string { return phoneAnswer })
	if m := mline(t, offer, "audio"); !strings.Contains(m, " RTP/AVP ") {
		t.Errorf("SIP offer's audio is %q, want RTP/AVP", m)
	}
	has(t, "SIP offer", offer, []string{"c=IN IP4 127.0.0.1"}, phoneLines)
	if m := mline(t, answer, "audio"); !strings.Contains(m, "UDP/TLS/RTP/SAVPF") {
		t.Errorf("web answer's audio is %q, want UDP/TLS/RTP/SAVPF", m)
	}
	// The phone refused video (port 0); the browser must see it refused.
	if m := mline(t, answer, "video"); !strings.HasPrefix(m, "m=video 0 ") {
		t.Errorf("web answer's video is %q, want it refused", m)
	}
	has(t, "web answer", answer, webRTCLines, []string{"a=crypto:"})
}

// TestRTPEnginePhoneToWeb: a plain phone's offer reaches the browser as
// WebRTC (auto anchors it: no ICE, no fingerprint), and the browser's
// answer reaches the phone as RTP/AVP.
func TestRTPEnginePhoneToWeb(t *testing.T) {
	phoneOffer := "v=0\r\no=phone 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40002 RTP/AVP 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	offer, answer := anchoredCall(t, rtpengine.SIPToWeb, phoneOffer, func(o string) string { return browserAnswer(t, o) })
	has(t, "web offer", offer, append([]string{"UDP/TLS/RTP/SAVPF"}, webRTCLines...), []string{"a=crypto:"})
	if m := mline(t, answer, "audio"); !strings.Contains(m, " RTP/AVP ") {
		t.Errorf("SIP answer's audio is %q, want RTP/AVP", m)
	}
	has(t, "SIP answer", answer, nil, phoneLines)
}

// TestRTPEngineSDESPhoneToWeb: a phone offering SDES-SRTP (RTP/SAVP with
// a=crypto) reaches the browser as WebRTC without SDES, and the browser's
// answer reaches the phone as RTP/SAVP with rtpengine's crypto: an answer
// in the phone's own protocol (with RTP/AVP forced, the phone would get a
// plain answer to its SRTP offer and refuse the call).
func TestRTPEngineSDESPhoneToWeb(t *testing.T) {
	phoneOffer := "v=0\r\no=phone 4 4 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40004 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=sendrecv\r\n"
	offer, answer := anchoredCall(t, rtpengine.SIPToWeb, phoneOffer, func(o string) string { return browserAnswer(t, o) })
	has(t, "web offer", offer, []string{"UDP/TLS/RTP/SAVPF", "a=fingerprint:"}, []string{"a=crypto:"})
	if m := mline(t, answer, "audio"); !strings.Contains(m, " RTP/SAVP ") {
		t.Errorf("SIP answer's audio to an SDES offer is %q, want RTP/SAVP", m)
	}
	has(t, "SIP answer to an SDES offer", answer, []string{"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"}, []string{"a=fingerprint:", "a=ice-"})
}

// assertNoCalls checks that rtpengine no longer knows callID and lists no
// call at all.
func assertNoCalls(t *testing.T, c *rtpengine.Client, callID string) {
	t.Helper()
	_, err := c.Query(t.Context(), &rtpengine.Request{CallID: callID})
	var re *rtpengine.Error
	if !errors.As(err, &re) || !strings.Contains(strings.ToLower(re.Reason), "unknown call") {
		t.Errorf("query after delete: %v, want rtpengine's unknown call-id error", err)
	}
	ids, err := c.List(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Errorf("rtpengine still lists calls %v", ids)
	}
}

// mline returns the first m= line of the given media.
func mline(t *testing.T, sdp, media string) string {
	t.Helper()
	for l := range strings.SplitSeq(sdp, "\r\n") {
		if strings.HasPrefix(l, "m="+media+" ") {
			return l
		}
	}
	t.Fatalf("no m=%s in:\n%s", media, sdp)
	return ""
}

// browserAnswer is Chrome's recorded answer, given the mid of offer as
// the browser would (it was recorded for another offer).
func browserAnswer(t *testing.T, offer string) string {
	t.Helper()
	mid := between(offer, "a=mid:", "\r\n")
	return strings.Replace(chromeSDP(t, "chrome_answer.sdp"), "a=mid:0\r\n", "a=mid:"+mid+"\r\n", 1)
}

func between(s, from, to string) string {
	_, after, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(after, to)
	return v
}

// TestRTPEngineForksAndReoffer: answers from two forks of one INVITE (one
// via-branch, two To-tags): rtpengine keeps the call's media on the latest
// answer only, which is the fork whose 200 OK comes last; a re-offer (hold)
// and its answer then go through the same call, and delete clears it.
func TestRTPEngineForksAndReoffer(t *testing.T) {
	c := startRTPEngine(t)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAlways)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	keys := rtpengine.Keys{CallID: "forks@test", FromTag: "ft3", ViaBranch: "z9hG4bK-3"}
	s, _, err := a.Offer(ctx, rtpengine.WebToSIP, keys, chromeSDP(t, "chrome_offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"fork-a", "fork-b"} {
		if _, err := s.Answer(ctx, tag, phoneAnswer); err != nil {
			t.Fatalf("answer of %s: %v", tag, err)
		}
	}
	if got := tags(t, c, keys.CallID); got != "fork-b ft3" {
		t.Errorf("rtpengine's monologues after two forks answered: %q, want the caller's and the last fork's", got)
	}

	hold := strings.ReplaceAll(chromeSDP(t, "chrome_offer.sdp"), "a=sendrecv", "a=sendonly")
	offer, err := s.Reoffer(ctx, hold)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(offer, "a=sendonly") || !strings.Contains(mline(t, offer, "audio"), " RTP/AVP ") {
		t.Errorf("hold re-offer toward the phone:\n%s", offer)
	}
	answer, err := s.Answer(ctx, "fork-b", strings.ReplaceAll(phoneAnswer, "a=sendrecv", "a=recvonly"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, "a=recvonly") || !strings.Contains(answer, "a=fingerprint:") {
		t.Errorf("hold answer toward the browser:\n%s", answer)
	}
	if _, err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoCalls(t, c, keys.CallID)
}

// tags returns the sorted tags of rtpengine's monologues in a call, from
// its query answer.
func tags(t *testing.T, c *rtpengine.Client, callID string) string {
	t.Helper()
	q, err := c.Query(t.Context(), &rtpengine.Request{CallID: callID})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := q.Raw["tags"].(map[string]any)
	var ts []string
	for k := range m {
		ts = append(ts, k)
	}
	slices.Sort(ts)
	return strings.Join(ts, " ")
}

// TestRTPEngineCodecs: a route's codecs (media.codecs, media.routes) reach
// a real rtpengine on the offer toward the phone: stripped codecs are
// gone from it, a masked one too, a transcoded one is added, and the
// browser's answer still lists what the browser offered.
func TestRTPEngineCodecs(t *testing.T) {
	c := startRTPEngine(t)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAuto)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	keys := rtpengine.Keys{CallID: t.Name() + "@test", FromTag: "ft"}
	route := rtpengine.Route{Codecs: rtpengine.Codecs{Strip: []string{"opus", "red", "G722"}, Mask: []string{"PCMA"}, Transcode: []string{"GSM"}}}
	s, out, err := a.OfferRoute(ctx, rtpengine.WebToSIP, keys, chromeSDP(t, "chrome_offer.sdp"), route)
	if err != nil {
		t.Fatal(err)
	}
	audio := out[:strings.Index(out, "m=video")]
	has(t, "offer to the phone", audio, []string{"PCMU/8000", "GSM/8000", "telephone-event/8000"}, []string{"opus/", "red/", "G722/", "PCMA/"})
	back, err := s.Answer(ctx, "tt", "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio 40000 RTP/AVP 3\r\na=rtpmap:3 GSM/8000\r\na=sendrecv\r\nm=video 0 RTP/AVP 96\r\n")
	if err != nil {
		t.Fatal(err)
	}
	// The phone chose GSM, which the browser never offered: rtpengine
	// transcodes, and answers the browser with one of its own codecs.
	if strings.Contains(back, "GSM/") || !strings.Contains(back, "a=rtpmap:") {
		t.Errorf("answer to the browser:\n%s", back)
	}
	if _, err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoCalls(t, c, keys.CallID)
}
