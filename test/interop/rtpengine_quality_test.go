package interop

import (
	"encoding/binary"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// TestRTPEngineQuality: a browser's call to a phone anchored in a real
// rtpengine, the phone sending 40 RTP packets (PCMU, 172 bytes) to the
// port rtpengine offered it; the call's delete answer gives the figures
// per leg: the phone's leg received 40 packets and their bytes, the
// browser's (which never did DTLS here) none, and rtpengine counts what
// it could not relay to the browser as errors of the browser's leg. The
// RTCP the phone also sends is not counted as the phone's RTP.
func TestRTPEngineQuality(t *testing.T) {
	c := startRTPEngine(t)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAuto)
	if err != nil {
		t.Fatal(err)
	}
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	ctx := t.Context()
	keys := rtpengine.Keys{CallID: "quality@test", FromTag: "web-tag", ViaBranch: "z9hG4bK-quality"}
	s, offer, err := a.Offer(ctx, rtpengine.WebToSIP, keys, chromeSDP(t, "chrome_offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`m=audio (\d+) RTP/AVP`).FindStringSubmatch(offer)
	if m == nil {
		t.Fatalf("no RTP/AVP audio in the offer:\n%s", offer)
	}
	to, _ := strconv.Atoi(m[1])
	answer := strings.Replace(phoneAnswer, "m=audio 40000", "m=audio "+strconv.Itoa(phone.LocalAddr().(*net.UDPAddr).Port), 1)
	if _, err := s.Answer(ctx, "phone-tag", answer); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		p := make([]byte, 12+160)
		p[0], p[1] = 0x80, 0 // RTP version 2, PCMU
		binary.BigEndian.PutUint16(p[2:], uint16(i))
		binary.BigEndian.PutUint32(p[4:], uint32(i*160))
		binary.BigEndian.PutUint32(p[8:], 0x5eed)
		if _, err := phone.WriteToUDP(p, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to}); err != nil {
			t.Fatal(err)
		}
	}
	// An RTCP receiver report, on rtpengine's RTCP port (the next one).
	rr := []byte{0x80, 201, 0, 1, 0, 0, 0x5e, 0xed}
	if _, err := phone.WriteToUDP(rr, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to + 1}); err != nil {
		t.Fatal(err)
	}
	// rtpengine handles the datagrams in order of arrival on each port:
	// a query answered after it counted the last packet ends the wait.
	// (A query is the figures' other source, on demand.)
	for {
		q, err := c.Query(ctx, &rtpengine.Request{CallID: keys.CallID})
		if err != nil {
			t.Fatal(err)
		}
		if tot, _ := q.Raw["totals"].(map[string]any); tot != nil {
			if rtp, _ := tot["RTP"].(map[string]any); rtp["packets"] == int64(n) {
				break
			}
		}
	}
	legs, err := s.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []rtpengine.LegStats{
		// The phone's 40 RTP packets and its RTCP could not go on to
		// the browser, which did no DTLS: errors on the browser's leg
		// (rtcp-mux, so one stream).
		{Side: rtpengine.SideWeb, Tag: "web-tag", Errors: n + 1},
		{Side: rtpengine.SideSIP, Tag: "phone-tag", Packets: n, Bytes: n * 172},
	}
	if len(legs) != 2 || legs[0] != want[0] || legs[1] != want[1] {
		t.Fatalf("legs %+v, want %+v", legs, want)
	}
	assertNoCalls(t, c, keys.CallID)
}
