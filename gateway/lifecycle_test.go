package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// closeCode reads until the socket closes and returns the close code.
func (p *peer) closeCode() websocket.StatusCode {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := p.c.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				p.t.Fatal("socket not closed")
			}
			return websocket.CloseStatus(err)
		}
	}
}

// establish runs a call from a to b up to complete and returns b's
// subsession.
func establish(t *testing.T, a, b *peer) string {
	t.Helper()
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c9", CorrelationID: "c9"},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
	in := b.read()
	expect(t, in, protocol.TypeRequest, protocol.ActionStart)
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall, SubsessionID: in.Control.SubsessionID, CorrelationID: in.Control.CorrelationID, MessageState: protocol.StateFinal},
		Header:  protocol.Header{Action: protocol.ActionStart},
		Payload: sdpPayload(sdpOffer),
	})
	expect(t, a.read(), protocol.TypeResponse, protocol.ActionStart)
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c9", CorrelationID: "c9"},
		Header:  protocol.Header{Action: protocol.ActionComplete},
	})
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionComplete)
	return in.Control.SubsessionID
}

func TestLogoutEndsPeersCall(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	bsub := establish(t, a, b)
	a.c.Close(websocket.StatusNormalClosure, "Normal close")
	bye := b.read()
	expect(t, bye, protocol.TypeMessage, protocol.ActionShutdown)
	if bye.Control.SubsessionID != bsub {
		t.Fatalf("shutdown on %q", bye.Control.SubsessionID)
	}
	if st := g.Stats(); g.lookup(a.sid) != nil || st.Calls != 0 || st.Sessions != 1 || st.StoredSessions != 1 {
		t.Fatalf("after logout: %+v", st)
	}
}

func TestCancelAndDecline(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	start := func(sub string) *protocol.Frame {
		a.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: sub, CorrelationID: sub},
			Header:  protocol.Header{Action: protocol.ActionStart, Target: "bob@example.com"},
			Payload: sdpPayload(sdpOffer),
		})
		return b.read()
	}
	// Cancel: A's shutdown before the answer reaches B on B's subsession
	// with target = B, and A hears nothing more.
	in := start("c1")
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1", CorrelationID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionShutdown},
	})
	cancel := b.read()
	expect(t, cancel, protocol.TypeMessage, protocol.ActionShutdown)
	if cancel.Control.SubsessionID != in.Control.SubsessionID || cancel.Header.Target != "bob@example.com" {
		t.Fatalf("cancel %s", cancel.Marshal())
	}
	// Decline 486 reaches A as an error with that code on A's ids.
	in = start("c2")
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageCall, SubsessionID: in.Control.SubsessionID, CorrelationID: in.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionStart, ErrorCode: 486},
	})
	e := a.read()
	if e.Control.Type != protocol.TypeError || e.Header.ErrorCode != 486 || e.Control.SubsessionID != "c2" || e.Control.CorrelationID != "c2" {
		t.Fatalf("decline %s", e.Marshal())
	}
	if g.Stats().Calls != 0 {
		t.Fatalf("calls left %d", g.Stats().Calls)
	}
}

// TestForking rings every session of the callee; the first answer wins
// and the other fork is told to stop.
func TestForking(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b1 := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b2 := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b1.connect("bob@example.com")
	b2.connect("bob@example.com")
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c2"},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
	in1, in2 := b1.read(), b2.read()
	b2.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall, SubsessionID: in2.Control.SubsessionID, CorrelationID: in2.Control.CorrelationID, MessageState: protocol.StateFinal},
		Header:  protocol.Header{Action: protocol.ActionStart},
		Payload: sdpPayload(sdpOffer),
	})
	if r := a.read(); r.Header.ResponseCode != 200 {
		t.Fatalf("answer %s", r.Marshal())
	}
	stop := b1.read()
	expect(t, stop, protocol.TypeMessage, protocol.ActionShutdown)
	if stop.Control.SubsessionID != in1.Control.SubsessionID {
		t.Fatal("losing fork not stopped")
	}
}

func TestReofferAndGlare(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	bsub := establish(t, a, b)
	// A re-offers (transcript §8.1); B answers; A completes.
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c9", CorrelationID: "c77"},
		Header:  protocol.Header{Action: protocol.ActionStart, Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
	re := b.read()
	expect(t, re, protocol.TypeRequest, protocol.ActionStart)
	if re.Control.SubsessionID != bsub {
		t.Fatal("re-offer on a new subsession")
	}
	// B re-offers at the same time: glare, 491 to B.
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionStart},
		Payload: sdpPayload(sdpOffer),
	})
	if g := b.read(); g.Control.Type != protocol.TypeError || g.Header.ErrorCode != 491 {
		t.Fatalf("glare %s", g.Marshal())
	}
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall, SubsessionID: bsub, CorrelationID: re.Control.CorrelationID, MessageState: protocol.StateFinal},
		Header:  protocol.Header{Action: protocol.ActionStart},
		Payload: sdpPayload(sdpOffer),
	})
	ans := a.read()
	if ans.Header.ResponseCode != 200 || ans.Control.CorrelationID != "c77" || ans.Control.SubsessionID != "c9" {
		t.Fatalf("re-offer answer %s", ans.Marshal())
	}
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c9", CorrelationID: "c77"},
		Header:  protocol.Header{Action: protocol.ActionComplete},
	})
	if c := b.read(); c.Header.Action != protocol.ActionComplete || c.Control.CorrelationID != re.Control.CorrelationID {
		t.Fatalf("complete %s", c.Marshal())
	}
}

func TestReplacedSocket(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	// A ping-triggered reconnect leaves the old socket open.
	a2 := dial(t, url, protocol.SubprotocolOracle, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`)
	if r := a2.read(); r.Control.SessionID != a.sid {
		t.Fatalf("resume failed: %s", r.Marshal())
	}
	if code := a.closeCode(); code != 4000 {
		t.Fatalf("old socket closed with %d, want 4000", code)
	}
}

func TestFailedResumeSameIdentity(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	establish(t, a, b)
	a.c.CloseNow()
	// The client claims to have processed a frame the server never sent.
	a2 := dial(t, url, protocol.SubprotocolOracle, nil)
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":99,"cslw":null,"csuw":null},"payload":{}}`)
	r := a2.read()
	if r.Control.SessionID == a.sid || r.Control.SessionID == "" {
		t.Fatalf("resume should fail with a new session: %s", r.Marshal())
	}
	// The old session ended: its call is shut down toward B.
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
	if g.lookup(a.sid) != nil {
		t.Fatal("old session still there")
	}
}

func TestResumeTimeout(t *testing.T) {
	g, url := newGateway(t, func(c *Config) { c.Session.ResumeTimeout = Duration(time.Second) })
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	establish(t, a, b)
	a.c.CloseNow()
	// B hears the shutdown once A's resume timeout expires.
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
	if g.lookup(a.sid) != nil {
		t.Fatal("session outlived its resume timeout")
	}
}

func TestTransportLimits(t *testing.T) {
	_, url := newGateway(t, func(c *Config) { c.WebSocket.MaxFrameBytes = 4096 })
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	a.write(`{"control":{"type":"message"},"payload":{"x":"` + strings.Repeat("a", 5000) + `"}}`)
	if code := a.closeCode(); code != websocket.StatusMessageTooBig {
		t.Fatalf("oversize: close %d", code)
	}
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.c.Write(ctx, websocket.MessageText, []byte("{\"x\":\"\xff\"}"))
	if code := b.closeCode(); code != websocket.StatusInvalidFramePayloadData {
		t.Fatalf("bad UTF-8: close %d", code)
	}
	c := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	c.connect("carol@example.com")
	for i := 0; i < maxBadFrames; i++ {
		c.write("garbage")
	}
	if code := c.closeCode(); code != websocket.StatusPolicyViolation {
		t.Fatalf("garbage: close %d", code)
	}
}

func TestForeignOrigin(t *testing.T) {
	_, url := newGateway(t, func(c *Config) { c.WebSocket.AllowedOrigins = []string{"app.example.com"} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{"Origin": {"https://evil.example.net"}}
	_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"jsonrtc"}, HTTPHeader: h})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err=%v resp=%v", err, resp)
	}
	ok := dial(t, url, protocol.SubprotocolJSONrtc, http.Header{"Origin": {"https://app.example.com"}})
	ok.connect("alice@example.com")
}

func TestNoOtherSessionNotices(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")
	bsub := establish(t, a, b)
	m := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	m.connect("mallory@example.com")
	for i := 0; i < maxBadFrames; i++ {
		m.write(`{"control":` + strings.Repeat("[", i) + `}`)
	}
	m.closeCode()
	// The call still works both ways.
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: bsub},
		Header:  protocol.Header{Action: protocol.ActionShutdown},
	})
	expect(t, a.read(), protocol.TypeMessage, protocol.ActionShutdown)
}

// TestLivenessDropsDeadSocket: a peer that stops answering WebSocket pings
// loses its socket, but not its session.
func TestLivenessDropsDeadSocket(t *testing.T) {
	lost := make(chan string, 1)
	g, url := newGateway(t, func(c *Config) {
		c.WebSocket.PingInterval = Duration(time.Second)
		c.WebSocket.PingTimeout = Duration(200 * time.Millisecond)
	})
	g.onSocketLost = func(s *Session) { lost <- s.id }
	// A coder/websocket client answers pings only while it reads: after
	// the connect exchange this peer never reads again, so it is dead.
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	select {
	case id := <-lost:
		if id != a.sid {
			t.Fatalf("lost socket of %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dead socket not dropped")
	}
	if g.lookup(a.sid) == nil {
		t.Fatal("session ended with its socket")
	}
}
