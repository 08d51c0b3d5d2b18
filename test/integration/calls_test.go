package integration

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/protocol"
)

const offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
const answer = "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"

func expectCall(t *testing.T, c *client.Client, want client.CallEvent) client.Event {
	t.Helper()
	ev := nextCall(t, c)
	if ev.CallEvent != want {
		t.Fatalf("%s: call event %v (code %d %s), want %v", c.Identity(), ev.CallEvent, ev.Code, ev.Reason, want)
	}
	return ev
}

// call places a call from a to b and returns both ends once established.
func call(t *testing.T, a, b *client.Client) (*client.Call, *client.Call) {
	t.Helper()
	out, err := a.StartCall(ctx(t), b.Identity(), offer, protocol.Ext{Name: "x-app", Value: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	in := next(t, b, client.EventIncomingCall)
	if in.SDP != offer || in.Call.Peer() != a.Identity() {
		t.Fatalf("incoming call from %q with SDP %q", in.Call.Peer(), in.SDP)
	}
	if e, ok := in.Header.ExtValue("x-app"); !ok || e.Value != "demo" {
		t.Fatal("extension header lost")
	}
	if err := in.Call.Ring(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if ev := expectCall(t, a, client.CallRinging); ev.Code != 180 {
		t.Fatalf("ringing code %d", ev.Code)
	}
	if err := in.Call.Answer(ctx(t), answer); err != nil {
		t.Fatal(err)
	}
	if ev := expectCall(t, a, client.CallAnswered); ev.SDP != answer || ev.Code != 200 {
		t.Fatalf("answer %d %q", ev.Code, ev.SDP)
	}
	expectCall(t, a, client.CallEstablished) // a sent complete
	expectCall(t, b, client.CallEstablished) // b received it
	return out, in.Call
}

func TestCallEndToEnd(t *testing.T) {
	g, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)
	out, in := call(t, a, b)
	// DTMF and a re-offer (hold) from the callee.
	if err := out.DTMF(ctx(t), "12#", 160); err != nil {
		t.Fatal(err)
	}
	if ev := expectCall(t, b, client.CallDTMF); ev.Digits != "12#" || ev.Duration != 160 {
		t.Fatalf("dtmf %q %d", ev.Digits, ev.Duration)
	}
	hold := strings.Replace(offer, "a=sendrecv", "a=sendonly", 1)
	if err := in.ReOffer(ctx(t), hold); err != nil {
		t.Fatal(err)
	}
	if ev := expectCall(t, a, client.CallReOffer); ev.SDP != hold {
		t.Fatalf("re-offer SDP %q", ev.SDP)
	}
	if err := out.Answer(ctx(t), strings.Replace(answer, "a=sendrecv", "a=recvonly", 1)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, b, client.CallReOfferAnswered)
	expectCall(t, a, client.CallEstablished) // b's complete for the re-offer
	if err := in.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, a, client.CallEnded)
	if s := g.Stats(); s.Calls != 0 {
		t.Fatalf("calls left: %d", s.Calls)
	}
}

func TestCallDeclineCancelBusy(t *testing.T) {
	g, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)

	// Decline.
	if _, err := a.StartCall(ctx(t), "bob@example.com", offer); err != nil {
		t.Fatal(err)
	}
	in := next(t, b, client.EventIncomingCall)
	in.Call.Decline(ctx(t), 603)
	if ev := expectCall(t, a, client.CallFailed); ev.Code != 603 {
		t.Fatalf("decline code %d", ev.Code)
	}
	// Busy.
	a.StartCall(ctx(t), "bob@example.com", offer)
	in = next(t, b, client.EventIncomingCall)
	in.Call.Decline(ctx(t), 486)
	if ev := expectCall(t, a, client.CallFailed); ev.Code != 486 {
		t.Fatalf("busy code %d", ev.Code)
	}
	// Cancel before the answer.
	out, _ := a.StartCall(ctx(t), "bob@example.com", offer)
	next(t, b, client.EventIncomingCall)
	if err := out.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, b, client.CallEnded)
	// Unknown and offline targets.
	a.StartCall(ctx(t), "nobody@example.com", offer)
	if ev := expectCall(t, a, client.CallFailed); ev.Code != 404 {
		t.Fatalf("unknown target code %d", ev.Code)
	}
	c := connect(t, url, "carol@example.com", nil)
	c.Close()
	a.StartCall(ctx(t), "carol@example.com", offer)
	if ev := expectCall(t, a, client.CallFailed); ev.Code != 480 {
		t.Fatalf("offline target code %d", ev.Code)
	}
	if s := g.Stats(); s.Calls != 0 {
		t.Fatalf("calls left: %d", s.Calls)
	}
}

func TestMessaging(t *testing.T) {
	_, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)
	done := make(chan int, 1)
	go func() {
		code, _ := a.Send(context.Background(), "bob@example.com", "text/plain", "héllo\nworld")
		done <- code
	}()
	ev := next(t, b, client.EventMessage)
	if ev.Message.Body != "héllo\nworld" || ev.Message.From != "alice@example.com" || ev.Message.ContentType != "text/plain" {
		t.Fatalf("message %+v", ev.Message)
	}
	ev.Message.Reply(ctx(t), 202)
	if code := <-done; code != 202 {
		t.Fatalf("delivery report %d", code)
	}
	_, err := a.Send(ctx(t), "nobody@example.com", "text/plain", "x")
	var fe *client.FrameError
	if !errors.As(err, &fe) || fe.Code != 404 {
		t.Fatalf("send to unknown: %v", err)
	}
}

// TestResumeMidCall kills A's TCP connection in the middle of a call; B
// re-offers while A's socket is dead; A resumes, gets the re-offer, and the
// call goes on and ends cleanly.
func TestResumeMidCall(t *testing.T) {
	g, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)
	out, in := call(t, a, b)
	sid := a.SessionID()
	a.Kill()
	next(t, a, client.EventReconnecting)
	// Sent while A's socket is dead: the gateway retains it.
	if err := in.DTMF(ctx(t), "5", 100); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, a, client.EventResumed); ev.SessionID != sid {
		t.Fatalf("resumed as %q, was %q", ev.SessionID, sid)
	}
	if ev := expectCall(t, a, client.CallDTMF); ev.Digits != "5" {
		t.Fatalf("lost frame came back as %q", ev.Digits)
	}
	// And A's frames after the resume reach B.
	if err := out.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	expectCall(t, b, client.CallEnded)
	if s := g.Stats(); s.Calls != 0 || s.Sessions != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestStolenSessionID: another identity presenting Alice's session id gets
// a session of its own; Alice's session and call are untouched.
func TestStolenSessionID(t *testing.T) {
	_, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)
	out, _ := call(t, a, b)
	m := connect(t, url, "mallory@example.com", nil)
	raw := `{"control":{"type":"request","package_type":"register","session_id":"` + a.SessionID() + `","version":"1.0"},"header":{"action":"connect","initiator":"mallory@example.com","cslr":1,"cslw":null,"csuw":null},"payload":{}}`
	if err := m.SendRaw(ctx(t), []byte(raw)); err != nil {
		t.Fatal(err)
	}
	// Alice's call still works.
	if err := out.DTMF(ctx(t), "9", 100); err != nil {
		t.Fatal(err)
	}
	if ev := expectCall(t, b, client.CallDTMF); ev.Digits != "9" {
		t.Fatal("victim's call disturbed")
	}
}

func TestLogoutEndsPeersCall(t *testing.T) {
	g, url := startGateway(t, nil)
	a := connect(t, url, "alice@example.com", nil)
	b := connect(t, url, "bob@example.com", nil)
	call(t, a, b)
	a.Close()
	expectCall(t, b, client.CallEnded)
	if s := g.Stats(); s.Calls != 0 {
		t.Fatalf("calls left: %d", s.Calls)
	}
}
