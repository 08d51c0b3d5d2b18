package interop

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// TestRTPEngineTrickle: a real rtpengine takes a browser's offer without
// candidates (sent before gathering ended), then each candidate the
// browser trickles as an RFC 8840 fragment (Session.Trickle: an offer
// with the fragment flag) and end-of-candidates likewise, answering ok,
// and end-of-candidates likewise. rtpengine uses them: it sends its ICE
// connectivity checks (STUN Binding requests naming the browser's ufrag)
// to the candidates, the one trickled before the phone's answer (queued
// by rtpengine) and the one after. The candidates name UDP sockets of the
// test that are in no SDP, so a check there comes from the fragment.
func TestRTPEngineTrickle(t *testing.T) {
	c := startRTPEngine(t)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAlways)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	web := noCandidates(chromeSDP(t, "chrome_offer.sdp"))
	frag := iceFragment("q7Zt", "N3kd8xVq2LmR0pYw5Hc9Tb4e", "0")
	cand := func(conn *net.UDPConn) string { return frag + hostCandidate(conn) }
	before, after := udpSocket(t), udpSocket(t)
	end := frag + "a=end-of-candidates\r\n"

	s, _, err := a.Offer(ctx, rtpengine.WebToSIP, rtpengine.Keys{CallID: "trickle@test", FromTag: "ft-t", ViaBranch: "z9hG4bK-t"}, web)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Trickle(ctx, cand(before)); err != nil {
		t.Fatalf("candidate before the answer: %v", err)
	}
	if _, err := s.Answer(ctx, "phone-t", phoneAnswer); err != nil {
		t.Fatal(err)
	}
	if err := s.Trickle(ctx, cand(after)); err != nil {
		t.Fatalf("candidate after the answer: %v", err)
	}
	if err := s.Trickle(ctx, end); err != nil {
		t.Fatalf("end-of-candidates: %v", err)
	}
	for name, conn := range map[string]*net.UDPConn{"before the answer": before, "after the answer": after} {
		if !stunCheck(conn, "q7Zt", 10*time.Second) {
			t.Errorf("no ICE check from rtpengine to the candidate trickled %s", name)
		}
	}
	if _, err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRTPEngineTrickleAnswer: in a call from a phone, the browser's
// answer without candidates, then one trickled: rtpengine matches the
// fragment by the answer's tag (Session.Trickle names it the from-tag)
// and checks the candidate.
func TestRTPEngineTrickleAnswer(t *testing.T) {
	c := startRTPEngine(t)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAlways)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	phone := "v=0\r\no=phone 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	s, offer, err := a.Offer(ctx, rtpengine.SIPToWeb, rtpengine.Keys{CallID: "trickle-in@test", FromTag: "phone-i", ViaBranch: "z9hG4bK-i"}, phone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(ctx, "web-i", noCandidates(browserAnswer(t, offer))); err != nil {
		t.Fatal(err)
	}
	conn := udpSocket(t)
	if err := s.Trickle(ctx, iceFragment("Hm3P", "c8Vb1nQz6TfK2wRy0aLx7EgU", between(offer, "a=mid:", "\r\n"))+hostCandidate(conn)); err != nil {
		t.Fatal(err)
	}
	if !stunCheck(conn, "Hm3P", 10*time.Second) {
		t.Error("no ICE check from rtpengine to the trickled candidate")
	}
	if _, err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

func noCandidates(sdp string) string {
	return regexp.MustCompile(`(?m)^a=candidate:.*\r\n`).ReplaceAllString(sdp, "")
}

// iceFragment is an RFC 8840 fragment's head for the audio of mid, with
// the credentials under the m= line as well: rtpengine (10.5) takes a
// fragment's candidates only for media with their own ice-ufrag.
func iceFragment(ufrag, pwd, mid string) string {
	creds := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\n"
	return creds + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:" + mid + "\r\n" + creds
}

// hostCandidate is a host candidate line for conn's address.
func hostCandidate(conn *net.UDPConn) string {
	return fmt.Sprintf("a=candidate:2739104825 1 udp 2122260223 127.0.0.1 %d typ host generation 0\r\n", conn.LocalAddr().(*net.UDPAddr).Port)
}

func udpSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stunCheck waits up to d for a STUN Binding request (RFC 8489: type
// 0x0001, magic cookie 0x2112A442) whose USERNAME begins with ufrag, the
// ICE username of a check toward that agent (RFC 8445 section 7.2.2).
func stunCheck(c *net.UDPConn, ufrag string, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		p := buf[:n]
		if n >= 20 && p[0] == 0 && p[1] == 1 && bytes.Equal(p[4:8], []byte{0x21, 0x12, 0xa4, 0x42}) && bytes.Contains(p[20:], []byte(ufrag+":")) {
			return true
		}
	}
}
