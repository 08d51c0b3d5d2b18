package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/internal/logtest"
	"github.com/jsonrtc/jsonrtc/limits"
	"github.com/jsonrtc/jsonrtc/protocol"
)

// newLoggedGateway is newGateway with the gateway's log counted.
func newLoggedGateway(t *testing.T, mod func(*Config)) (*Gateway, string, *logtest.Counter) {
	t.Helper()
	lc := logtest.NewCounter()
	g, url := newGatewayOpts(t, mod, Options{Logger: slog.New(lc)})
	return g, url, lc
}

// frameRate sets the default profile's identity frame rate (which the
// socket budget takes too).
func frameRate(r limits.Rate) func(*Config) {
	return func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{"default": {Identity: limits.Quota{Sessions: 1, Frames: r}}}}
	}
}

// drain reads p's socket until it closes and returns the frames it got
// and the close code.
func (p *peer) drain() (frames []string, code websocket.StatusCode) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := p.c.Read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				p.t.Fatalf("socket not closed; got %d frames", len(frames))
			}
			return frames, websocket.CloseStatus(err)
		}
		frames = append(frames, string(data))
	}
}

// flood writes frame n times as fast as the socket takes them, stopping
// at the first error (the gateway closed the socket).
func (p *peer) flood(n int, frame func(i int) string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		if p.c.Write(ctx, websocket.MessageText, []byte(frame(i))) != nil {
			return
		}
	}
}

// mostAnswers is what a socket budget of rate per second and burst
// answers at most in elapsed: the burst, what refilled, and one denial a
// second.
func mostAnswers(burst, rate int, elapsed time.Duration) int {
	secs := elapsed.Seconds()
	return burst + int(float64(rate)*secs) + int(secs) + 2
}

// TestConnectFloodBeforeSession: connects that fail, sent before any
// session exists on the socket, count against the socket's budget: past
// the burst they are answered once and not logged, and the socket is
// closed as the flood goes on. The old gateway answered and logged every
// one (two lines each here).
func TestConnectFloodBeforeSession(t *testing.T) {
	_, url, lc := newLoggedGateway(t, frameRate(limits.Rate{Rate: 50, Per: time.Second, Burst: 100}))
	alice := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	alice.connect("alice@example.com")
	mallory := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	mallory.connect("mallory@example.com") // her one session
	m2 := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	connect := `{"control":{"type":"request","package_type":"register","session_id":"` + alice.sid +
		`","sequence":1},"header":{"action":"connect","initiator":"mallory@example.com"}}`
	t0 := time.Now()
	go m2.flood(2000, func(int) string { return connect })
	frames, code := m2.drain()
	most := mostAnswers(100, 50, time.Since(t0))
	if code != websocket.StatusPolicyViolation {
		t.Errorf("flooder closed with %d, want 1008", code)
	}
	if len(frames) > most {
		t.Errorf("%d of 2000 connects answered, want at most %d", len(frames), most)
	}
	for _, msg := range []string{"resume refused: another identity", "session refused by limits"} {
		if n := lc.Count(msg); n == 0 || n > 5 {
			t.Errorf("%q logged %d times, want 1 to 5", msg, n)
		}
	}
	alice.pingPong()
}

// TestTextPingFlood: text pings count against the budget; past it they
// get no pong, and a ping flood closes the socket. The old transport
// answered every ping, uncounted.
func TestTextPingFlood(t *testing.T) {
	_, url, _ := newLoggedGateway(t, frameRate(limits.Rate{Rate: 50, Per: time.Second, Burst: 100}))
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	t0 := time.Now()
	go a.flood(2000, func(int) string { return "ping" })
	frames, code := a.drain()
	most := mostAnswers(100, 50, time.Since(t0))
	if code != websocket.StatusPolicyViolation {
		t.Errorf("pinger closed with %d, want 1008", code)
	}
	if len(frames) > most {
		t.Errorf("%d of 2000 pings answered, want at most %d", len(frames), most)
	}
}

// TestMalformedBetweenValid: malformed frames count over a window, so
// valid frames between them do not reset the count (they did: "10 in a
// row").
func TestMalformedBetweenValid(t *testing.T) {
	_, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	for range limits.MaxMalformed {
		a.write("garbage")
		a.write(`{"control":{"type":"acknowledgement","ack_sequence":1}}`)
	}
	frames, code := a.drain()
	if code != websocket.StatusPolicyViolation {
		t.Fatalf("closed with %d after %d answers, want 1008", code, len(frames))
	}
}

// TestDeniedFrameIsNotLost: a frame the budget drops without an answer is
// not acknowledged as processed, so the client resends it after a resume
// and it gets its answer. The old gateway counted every denied frame as
// processed.
func TestDeniedFrameIsNotLost(t *testing.T) {
	g, url := newGateway(t, frameRate(limits.Rate{Rate: 1, Per: time.Hour, Burst: 3}))
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com") // the socket's first token
	send := func() uint64 {
		return a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Target: "bob@example.com"}, Payload: []byte(`{"body":"hi"}`)})
	}
	send() // 2, 3: allowed
	send()
	send() // 4: denied, answered 503: processed, its outcome the error
	lost := send()
	for range 2 {
		if r := a.read(); r.Header.ErrorCode == protocol.CodeServiceUnavailable {
			t.Fatalf("allowed frame refused: %s", r.Marshal())
		}
	}
	r := a.read()
	if r.Header.ErrorCode != protocol.CodeServiceUnavailable || r.Control.CorrelationID != "c4" || r.Control.AckSequence != 4 {
		t.Fatalf("first denial answered %s, want 503 to c4 acknowledging 4", r.Marshal())
	}
	// The socket goes; the client resumes, still holding frame 5.
	a.c.CloseNow()
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.sid, b.seq, b.last = a.sid, a.seq, a.last
	seq := strconv.FormatUint(lost, 10)
	b.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `"},"header":{"action":"connect","initiator":"alice@example.com","cslr":` +
		strconv.FormatUint(a.last, 10) + `,"cslw":` + seq + `,"csuw":` + seq + `}}`)
	resp := b.read()
	if resp.Control.SessionID != a.sid || !resp.Header.SSLR.IsNumber() || resp.Header.SSLR.V != lost-1 {
		t.Fatalf("resume answered %s, want the session with sslr %d", resp.Marshal(), lost-1)
	}
	// Frame 5 again: this socket has tokens, the identity none, so it is
	// answered (503), not lost.
	b.write(`{"control":{"type":"request","package_type":"messaging","session_id":"` + a.sid + `","sequence":` + seq +
		`},"header":{"action":"send","target":"bob@example.com"},"payload":{"body":"hi"}}`)
	if r := b.read(); r.Control.CorrelationID != "c"+seq {
		t.Fatalf("resent frame answered %s", r.Marshal())
	}
	_ = g
}

// TestBehindClosesForResume: once a frame was dropped unanswered, the next
// new frame the budget lets through is not processed past it: the socket
// closes with 1013 for the client to resume.
func TestBehindClosesForResume(t *testing.T) {
	_, url := newGateway(t, frameRate(limits.Rate{Rate: 100, Per: time.Second, Burst: 2}))
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	// Writes fail once the gateway has closed: the close code tells.
	send := func() {
		a.seq++
		f := &protocol.Frame{Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c9",
			SessionID: a.sid, Sequence: a.seq}, Header: protocol.Header{Action: protocol.ActionTrickle}}
		a.c.Write(context.Background(), websocket.MessageText, f.Marshal())
	}
	// One allowed (the connect took the socket's first token), then
	// denials, then, 10 ms later, a token again.
	for range 4 {
		send()
	}
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := a.c.Read(context.Background()); err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	// A frame every 5 ms: one of them finds a refilled token.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var code websocket.StatusCode
	for code == 0 {
		select {
		case code = <-closed:
		case <-tick.C:
			send()
		}
	}
	if code != websocket.StatusTryAgainLater {
		t.Fatalf("closed with %d, want 1013", code)
	}
}

// TestClientSequenceExhausted: the frame that takes sequence 2^53-1 is
// answered with error 500 and the session ends; the old gateway took it
// and then dropped every later frame in silence.
func TestClientSequenceExhausted(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	s := g.lookup(a.sid)
	a.seq = protocol.MaxSequence - 1 // a gap, as after a failed resume
	a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header: protocol.Header{Action: protocol.ActionSend, Target: "bob@example.com"}, Payload: []byte(`{"body":"hi"}`)})
	r := a.read()
	if r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeServerError ||
		r.Control.CorrelationID != "c"+strconv.FormatUint(protocol.MaxSequence, 10) {
		t.Fatalf("frame 2^53-1 answered %s, want error 500", r.Marshal())
	}
	// The session is over by the time its last answer arrives: a resume
	// sent at once, before the close, starts a new one.
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.write(`{"control":{"type":"request","package_type":"register","session_id":"` + a.sid + `","version":"1.0"},"header":{"action":"connect","initiator":"alice@example.com","cslr":1,"cslw":` + strconv.FormatUint(protocol.MaxSequence, 10) + `,"csuw":` + strconv.FormatUint(protocol.MaxSequence, 10) + `},"payload":{}}`)
	if rr := b.read(); rr.Control.SessionID == a.sid {
		t.Fatalf("a session whose sequences ran out was resumed: %s", rr.Marshal())
	}
	if _, code := a.drain(); code != websocket.StatusNormalClosure {
		t.Errorf("closed with %d, want 1000", code)
	}
	<-s.gone
}

// TestServerSequenceExhausted: a session whose own numbering has run out
// ends rather than send a sequence its client cannot read.
func TestServerSequenceExhausted(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	s := g.lookup(a.sid)
	s.mu.Lock()
	s.st.NextSeq = protocol.MaxSequence + 1
	s.mu.Unlock()
	a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header: protocol.Header{Action: protocol.ActionSend, Target: "bob@example.com"}, Payload: []byte(`{"body":"hi"}`)})
	select {
	case <-s.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("session with no sequence left not ended")
	}
}

// TestGapFloodLogsFewLines: a client jumping its sequence on every frame
// (each a "sequence gap") writes a few lines per cause, not one a frame.
func TestGapFloodLogsFewLines(t *testing.T) {
	_, url, lc := newLoggedGateway(t, frameRate(limits.Rate{Rate: -1}))
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	for range 500 {
		a.seq++ // skip one
		a.send(&protocol.Frame{Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header: protocol.Header{Action: protocol.ActionSend, Target: "bob@example.com"}, Payload: []byte(`{"body":"hi"}`)})
	}
	for range 500 {
		a.read() // 404 or 503 (the message rate): each frame was read
	}
	if n := lc.Count("sequence gap"); n == 0 || n > 5 {
		t.Errorf("%d sequence gap lines for 500 gaps, want 1 to 5", n)
	}
}
