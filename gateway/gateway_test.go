package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// peer is a raw JSONrtc client for wire-level tests: it sends exactly the
// frames a test writes and returns exactly the frames the gateway sends.
type peer struct {
	t    testing.TB
	c    *websocket.Conn
	seq  uint64
	sid  string
	last uint64 // last server sequence seen
}

func newGateway(t testing.TB, mod func(*Config)) (*Gateway, string) {
	t.Helper()
	return newGatewayOpts(t, mod, Options{})
}

func newGatewayOpts(t testing.TB, mod func(*Config), opts Options) (*Gateway, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Session.AckDelay = Duration(time.Hour) // tests see only the frames they expect
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg, &opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return g, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/webrtc/test"
}

func dial(t testing.TB, url, sub string, h http.Header) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{sub}, HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, c: c}
	t.Cleanup(func() { c.CloseNow() })
	return p
}

func (p *peer) write(s string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// send stamps f with the next sequence and the session id and sends it.
func (p *peer) send(f *protocol.Frame) uint64 {
	p.t.Helper()
	p.seq++
	f.Control.Sequence = p.seq
	f.Control.SessionID = p.sid
	f.Control.AckSequence = p.last
	p.write(string(f.Marshal()))
	return p.seq
}

func (p *peer) read() *protocol.Frame {
	p.t.Helper()
	return p.readWithin(5 * time.Second)
}

// readWithin reads the next frame, failing the test past d.
func (p *peer) readWithin(d time.Duration) *protocol.Frame {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, data, err := p.c.Read(ctx)
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	f, err := protocol.Decode(data)
	if err != nil {
		p.t.Fatalf("gateway sent an undecodable frame %s: %v", data, err)
	}
	if f.Control.Sequence != 0 {
		p.last = f.Control.Sequence
	}
	return f
}

// pingPong sends a text ping and waits for the pong.
func (p *peer) pingPong() {
	p.t.Helper()
	p.write("ping")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, data, err := p.c.Read(ctx); err != nil || string(data) != "pong" {
		p.t.Fatalf("ping answered %q, %v", data, err)
	}
}

func (p *peer) connect(identity string) *protocol.Frame {
	p.t.Helper()
	p.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header:  protocol.Header{Action: protocol.ActionConnect, Initiator: identity, Target: identity},
	})
	r := p.read()
	if r.Control.Type != protocol.TypeResponse || r.Header.Action != protocol.ActionConnect || r.Control.SessionID == "" {
		p.t.Fatalf("connect response = %+v", r)
	}
	p.sid = r.Control.SessionID
	return r
}

func expect(t *testing.T, f *protocol.Frame, typ protocol.Type, action protocol.Action) {
	t.Helper()
	if f.Control.Type != typ || f.Header.Action != action {
		t.Fatalf("got %s/%s (%s), want %s/%s", f.Control.Type, f.Header.Action, f.Marshal(), typ, action)
	}
}

const sdpOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"

func sdpPayload(sdp string) []byte {
	return protocol.EncodePayload(protocol.CallPayload{SDP: sdp})
}

func TestConnectResponse(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	r := a.connect("alice@example.com")
	c, h := r.Control, r.Header
	if c.Package != protocol.PackageRegister || c.Sequence != 1 || c.AckSequence != 1 || c.MessageState != protocol.StateFinal ||
		h.Initiator != "alice@example.com" || h.ResponseCode != 200 || len(c.SessionID) < 22 {
		t.Fatalf("connect response %s", r.Marshal())
	}
	a.write("ping")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, data, err := a.c.Read(ctx); err != nil || string(data) != "pong" {
		t.Fatalf("ping answered %q, %v", data, err)
	}
}

func TestGuestIdentity(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	r := a.connect("")
	if !strings.HasPrefix(r.Header.Initiator, "guest-") {
		t.Fatalf("identity %q", r.Header.Initiator)
	}
}

// TestCallTranscript replays transcript (b) and (c) of the reference: A
// calls B, B rings and answers, A completes, B hangs up.
func TestCallTranscript(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	b := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b.connect("bob@example.com")

	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c2", CorrelationID: "c2"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com", Ext: []protocol.Ext{{Name: "x-custom", Value: "hello"}}},
		Payload: sdpPayload(sdpOffer),
	})
	in := b.read()
	expect(t, in, protocol.TypeRequest, protocol.ActionStart)
	bsub, bcorr := in.Control.SubsessionID, in.Control.CorrelationID
	if strings.HasPrefix(bsub, "c") || bcorr != "s2" || in.Header.Initiator != "alice@example.com" || in.Header.Target != "bob@example.com" || in.Control.AckSequence != 1 {
		t.Fatalf("incoming start %s", in.Marshal())
	}
	if e, ok := in.Header.ExtValue("x-custom"); !ok || e.Value != "hello" {
		t.Fatal("extension header not relayed")
	}
	var p protocol.CallPayload
	protocol.DecodePayload(in.Payload, &p)
	if p.SDP != sdpOffer {
		t.Fatalf("SDP changed: %q", p.SDP)
	}
	// B rings: no response_code, message_state subsequent.
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall, SubsessionID: bsub, CorrelationID: bcorr, MessageState: protocol.StateSubsequent},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
	})
	ring := a.read()
	expect(t, ring, protocol.TypeResponse, protocol.ActionStart)
	if ring.Header.ResponseCode != 180 || ring.Control.SubsessionID != "c2" || ring.Control.CorrelationID != "c2" || ring.Control.MessageState != protocol.StateSubsequent {
		t.Fatalf("ringing %s", ring.Marshal())
	}
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageCall, SubsessionID: bsub, CorrelationID: bcorr, MessageState: protocol.StateFinal},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "bob@example.com"},
		Payload: sdpPayload(sdpOffer),
	})
	ans := a.read()
	if ans.Header.ResponseCode != 200 || ans.Control.MessageState != protocol.StateFinal || ans.Header.Initiator != "alice@example.com" || ans.Header.Target != "bob@example.com" {
		t.Fatalf("answer %s", ans.Marshal())
	}
	// A's complete carries no ack_sequence, initiator or target.
	a.seq++
	a.write(`{"control":{"type":"message","package_type":"call","session_id":"` + a.sid + `","subsession_id":"c2","sequence":` + strconv.FormatUint(a.seq, 10) + `,"correlation_id":"c2","version":"1.0"},"header":{"action":"complete"},"payload":{}}`)
	cpl := b.read()
	expect(t, cpl, protocol.TypeMessage, protocol.ActionComplete)
	if cpl.Control.CorrelationID != bcorr || cpl.Control.SubsessionID != bsub {
		t.Fatalf("complete %s", cpl.Marshal())
	}
	if g.Stats().Calls != 1 {
		t.Fatalf("calls = %d", g.Stats().Calls)
	}
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: bsub, CorrelationID: "c4"},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: "bob@example.com", Target: "alice@example.com"},
	})
	bye := a.read()
	expect(t, bye, protocol.TypeMessage, protocol.ActionShutdown)
	if bye.Control.SubsessionID != "c2" || bye.Header.Initiator != "bob@example.com" {
		t.Fatalf("shutdown %s", bye.Marshal())
	}
	if g.Stats().Calls != 0 {
		t.Fatalf("calls left: %d", g.Stats().Calls)
	}
}

func TestResumeResendsLostFrame(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	// A's socket dies; B messages A meanwhile.
	a.c.CloseNow()
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header:  protocol.Header{Action: protocol.ActionSend, Target: "alice@example.com"},
		Payload: protocol.EncodePayload(protocol.MessagePayload{ContentType: "text/plain", Body: "while you were away"}),
	})
	// B's socket is read in order: its pong proves the message has been
	// relayed into A's session before A resumes.
	b.pingPong()
	a2 := dial(t, url, protocol.SubprotocolOracle, nil)
	a2.sid, a2.seq, a2.last = a.sid, a.seq, a.last
	a2.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","target":"alice@example.com","cslr":1,"cslw":2,"csuw":1},"payload":{}}`)
	r := a2.read()
	if r.Control.SessionID != a.sid || !r.Header.SSLR.IsNumber() || r.Header.SSLR.V != 1 {
		t.Fatalf("resume response %s", r.Marshal())
	}
	m := a2.read()
	expect(t, m, protocol.TypeRequest, protocol.ActionSend)
	if m.Control.Sequence != 2 || !strings.Contains(string(m.Payload), "while you were away") {
		t.Fatalf("resent %s", m.Marshal())
	}
	a2.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: m.Control.CorrelationID},
		Header:  protocol.Header{Action: protocol.ActionSend, ResponseCode: 200},
	})
	rep := b.read()
	expect(t, rep, protocol.TypeResponse, protocol.ActionSend)
	if rep.Header.ResponseCode != 200 {
		t.Fatalf("report %s", rep.Marshal())
	}
}

func TestStolenSessionID(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	m := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	m.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"mallory@example.com","cslr":1,"cslw":null,"csuw":null},"payload":{}}`)
	r := m.read()
	if r.Control.SessionID == a.sid || r.Header.Initiator != "mallory@example.com" {
		t.Fatalf("mallory got %s", r.Marshal())
	}
	// Alice's session is untouched: still there, still served.
	if g.lookup(a.sid) == nil {
		t.Fatal("victim's session was ended")
	}
	a.write("ping")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, data, err := a.c.Read(ctx); err != nil || string(data) != "pong" {
		t.Fatalf("victim's socket: %q %v", data, err)
	}
}

func TestBadInput(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	cases := []struct {
		in   string
		code int
	}{
		{`not json`, 400},
		{`{"control":{"type":"request","sequence":"x"}}`, 400},
		{`{"control":{"type":"request","package_type":"call","subsession_id":"c9","sequence":2},"header":{"action":"fly"}}`, 405},
		{`{"control":{"type":"request","package_type":"fax","subsession_id":"c9","sequence":3},"header":{"action":"start"}}`, 400},
		{`{"control":{"type":"request","package_type":"call","subsession_id":"c9","sequence":4},"header":{"action":"start","x-h":"a\r\nVia: evil"}}`, 400},
		{`{"control":{"type":"request","package_type":"call","subsession_id":"c9","sequence":5},"header":{"action":"start","target":"nobody@example.com"},"payload":{"sdp":"v=0\r\nm=audio 1 RTP/AVP 0\r\n"}}`, 404},
	}
	for _, c := range cases {
		a.write(c.in)
		r := a.read()
		if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != c.code {
			t.Fatalf("%s -> %s, want error %d", c.in, r.Marshal(), c.code)
		}
	}
}

func TestWrongSubprotocol(t *testing.T) {
	_, url := newGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"sip"}})
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Fatalf("err=%v resp=%v", err, resp)
	}
}
