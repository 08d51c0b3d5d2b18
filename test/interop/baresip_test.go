package interop

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
)

// These tests put a real softphone, baresip, on the SIP side: registered
// at Kamailio like a desk phone, calling and called by web users through
// the gateway. They check signaling only: the Go client's SDP (the
// plain RTP/AVP PCMU offer of the other tests, which baresip accepts)
// points at no media.

// baresipCarol starts Kamailio, a web gateway and baresip registered as
// carol (her digest password at Kamailio), answering calls itself.
func baresipCarol(t *testing.T) (*webGW, *baresip) {
	t.Helper()
	k := startKamailio(t)
	w := startWebGateway(t, k)
	return w, startBaresip(t, k, "carol", baresipOptions{Password: users["carol"], AutoAnswer: true})
}

// webCallsBaresip has web user alice call baresip and both sides see the
// call established.
func webCallsBaresip(t *testing.T, w *webGW, b *baresip, sdp string) (*client.Client, *client.Call) {
	t.Helper()
	a := w.alice(t, nil)
	out, err := a.StartCall(ctxT(t), strings.TrimPrefix(b.AOR, "sip:"), sdp)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if ev := b.expect(t, "CALL_ESTABLISHED"); !strings.Contains(ev.PeerURI, "alice@") {
		t.Fatalf("baresip established a call with %q", ev.PeerURI)
	}
	return a, out
}

func TestBaresipAnswersWebCall(t *testing.T) {
	w, b := baresipCarol(t)
	_, out := webCallsBaresip(t, w, b, offer)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b.expect(t, "CALL_CLOSED")
}

func TestBaresipCallsWebUser(t *testing.T) {
	w, b := baresipCarol(t)
	a := w.alice(t, nil)
	b.cmd(t, "dial", "sip:alice@"+domain)
	in := webNext(t, a, client.EventIncomingCall)
	if !strings.HasPrefix(in.Call.Peer(), "carol@") || !strings.Contains(in.SDP, "m=audio") {
		t.Fatalf("incoming from %q with %q", in.Call.Peer(), in.SDP)
	}
	if err := in.Call.Ring(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b.expect(t, "CALL_RINGING")
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEstablished) // baresip's ACK
	b.expect(t, "CALL_ESTABLISHED")
	b.cmd(t, "hangup", "")
	webExpect(t, a, client.CallEnded)
	b.expect(t, "CALL_CLOSED")
}

// mediaOffer is a PCMU offer with RFC 4733 telephone-events whose media
// address is pc: what baresip sends toward the web side arrives there.
func mediaOffer(pc net.PacketConn) string {
	port := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + port + " RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-15\r\na=sendrecv\r\n"
}

// rtpEvent waits on pc for an RFC 4733 telephone-event packet (payload
// type pt) and returns its event code.
func rtpEvent(t *testing.T, pc net.PacketConn, pt byte) byte {
	t.Helper()
	if err := pc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no telephone-event RTP packet: %v", err)
		}
		// 12-byte RTP header (no CSRC or extension from baresip), then
		// event, E/R/volume, duration.
		if n >= 16 && buf[0]>>6 == 2 && buf[1]&0x7f == pt {
			return buf[12]
		}
	}
}

// DTMF from the web side becomes INFO application/dtmf-relay, which
// baresip reports as a received key; baresip sends its DTMF in RTP (RFC
// 4733, baresip 1.0 has no INFO sending), to the media address of the
// web side's SDP, which the gateway passes through.
func TestBaresipDTMF(t *testing.T) {
	w, b := baresipCarol(t)
	media, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	_, out := webCallsBaresip(t, w, b, mediaOffer(media))
	if err := out.DTMF(ctxT(t), "5", 100); err != nil {
		t.Fatal(err)
	}
	if ev := b.expect(t, "CALL_DTMF_START"); ev.Param != "5" {
		t.Fatalf("baresip received DTMF %q, want 5", ev.Param)
	}
	b.cmd(t, "sndcode", "7")
	if code := rtpEvent(t, media, 101); code != 7 {
		t.Fatalf("telephone-event %d, want 7", code)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b.expect(t, "CALL_CLOSED")
}

// Hold from either side is a re-offer with the direction changed: the
// web side's becomes a re-INVITE that baresip answers recvonly, baresip's
// reaches the web user as a re-offer.
func TestBaresipHold(t *testing.T) {
	w, b := baresipCarol(t)
	a, out := webCallsBaresip(t, w, b, offer)
	for _, step := range []struct{ from, answer string }{{"a=sendonly", "a=recvonly"}, {"a=sendrecv", "a=sendrecv"}} {
		if err := out.ReOffer(ctxT(t), strings.Replace(offer, "a=sendrecv", step.from, 1)); err != nil {
			t.Fatal(err)
		}
		if ev := webExpect(t, a, client.CallReOfferAnswered); ev.Code != 200 || !strings.Contains(ev.SDP, step.answer) {
			t.Fatalf("re-offer %s answered %d %q, want %s", step.from, ev.Code, ev.SDP, step.answer)
		}
	}
	for _, step := range []struct{ cmd, offered, answer string }{{"hold", "a=sendonly", "a=recvonly"}, {"resume", "a=sendrecv", "a=sendrecv"}} {
		b.cmd(t, step.cmd, "")
		ev := webExpect(t, a, client.CallReOffer)
		if !strings.Contains(ev.SDP, step.offered) {
			t.Fatalf("baresip %s offered %q, want %s", step.cmd, ev.SDP, step.offered)
		}
		if err := ev.Call.Answer(ctxT(t), strings.Replace(offer, "a=sendrecv", step.answer, 1)); err != nil {
			t.Fatal(err)
		}
		webExpect(t, a, client.CallEstablished) // baresip's ACK
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b.expect(t, "CALL_CLOSED")
}

// TestBaresipReachableAfterWebSignOut: carol was on the web and signed
// out; her desk phone (baresip, registered as carol) still rings when a
// web user calls her. The gateway once answered 480 "target offline" at
// once, for the life of the process, to any identity that had been on
// the web.
func TestBaresipReachableAfterWebSignOut(t *testing.T) {
	w, b := baresipCarol(t)
	var n atomic.Int32
	c := w.connect(t, "carol@"+domain, func(o *client.Options) { o.Authorize = ha1Authorizer("carol", users["carol"], &n) })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	until(t, "carol's web session to end", func() bool { return w.g.Stats().Sessions == 0 })
	a, out := webCallsBaresip(t, w, b, offer)
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b.expect(t, "CALL_CLOSED")
	// A message to her goes to her phone too (MESSAGE, which baresip
	// accepts with 200), not 480 from the gateway.
	if _, err := a.Send(ctxT(t), "carol@"+domain, "text/plain", "call me back"); err != nil {
		t.Fatalf("message to offline carol: %v", err)
	}
}

// expectPeer is expect for an event of a call with peer (a user part).
func (b *baresip) expectPeer(t *testing.T, typ, peer string) baresipEvent {
	t.Helper()
	ev := b.expect(t, typ)
	if !strings.Contains(ev.PeerURI, peer+"@") {
		t.Fatalf("baresip %s for a call with %q, want %s", typ, ev.PeerURI, peer)
	}
	return ev
}

// A web user transfers baresip (blind, REFER): baresip calls the target,
// another web user, who answers. baresip's NOTIFYs of the new call reach
// the transferring web user as transfer progress, and the last, 200,
// ends the old call: the gateway sends baresip the BYE (RFC 5589 section
// 6) and the web user a shutdown.
func TestBaresipTransferredByWebUser(t *testing.T) {
	w, b := baresipCarol(t)
	bob := w.connect(t, "open@"+domain, nil)
	a, out := webCallsBaresip(t, w, b, offer)
	if code, err := out.Transfer(ctxT(t), "sip:open@"+domain); err != nil || code != 202 {
		t.Fatalf("transfer: %d %v", code, err)
	}
	in := webNext(t, bob, client.EventIncomingCall)
	if !strings.HasPrefix(in.Call.Peer(), "carol@") {
		t.Fatalf("transfer target called by %q", in.Call.Peer())
	}
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webExpect(t, bob, client.CallEstablished)
	b.expectPeer(t, "CALL_ESTABLISHED", "open")
	for {
		ev := webExpect(t, a, client.CallTransferProgress)
		if ev.Code >= 200 {
			if ev.Code != 200 {
				t.Fatalf("transfer ended with %d %s", ev.Code, ev.Reason)
			}
			break
		}
	}
	webExpect(t, a, client.CallEnded)
	b.expectPeer(t, "CALL_CLOSED", "alice")
	if err := in.Call.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b.expectPeer(t, "CALL_CLOSED", "open")
}

// baresip transfers a web user (blind, REFER): the web user is asked to
// transfer, with the target, accepts and calls it, and reports the new
// call's answer: baresip gets it as NOTIFY 200 and ends the old call
// itself (RFC 5589 section 6).
func TestBaresipTransfersWebUser(t *testing.T) {
	w, b := baresipCarol(t)
	bob := w.connect(t, "open@"+domain, nil)
	a, out := webCallsBaresip(t, w, b, offer)
	b.cmd(t, "transfer", "sip:open@"+domain)
	ev := webExpect(t, a, client.CallTransfer)
	if ev.ReferTo != "sip:open@"+domain {
		t.Fatalf("transfer to %q", ev.ReferTo)
	}
	if err := out.RespondTransfer(ctxT(t), 202); err != nil {
		t.Fatal(err)
	}
	next, err := a.StartCall(ctxT(t), "open@"+domain, offer)
	if err != nil {
		t.Fatal(err)
	}
	in := webNext(t, bob, client.EventIncomingCall)
	if err := in.Call.Answer(ctxT(t), offer); err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	if err := out.ReportTransfer(ctxT(t), 200); err != nil {
		t.Fatal(err)
	}
	b.expectPeer(t, "CALL_CLOSED", "alice")
	for {
		ev := webNext(t, a, client.EventCall)
		if ev.Call == out && ev.CallEvent == client.CallEnded {
			break
		}
	}
	if err := next.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, bob, client.CallEstablished)
	webExpect(t, bob, client.CallEnded)
}
