package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
)

// fakeResponder records the answer to the peer's request.
type fakeResponder chan sipgw.Answer

func (r fakeResponder) Respond(a sipgw.Answer) { r <- a }

func (r fakeResponder) answer(t *testing.T) sipgw.Answer {
	t.Helper()
	select {
	case a := <-r:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's request got no answer")
		return sipgw.Answer{}
	}
}

// answerDeclared makes p answer its request f with code (an error frame
// from 300) and payload.
func answerDeclared(p *peer, f *protocol.Frame, code int, payload string) {
	out := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeResponse, Package: protocol.PackageMessaging, CorrelationID: f.Control.CorrelationID,
			MessageState: protocol.StateFinal},
		Header:  protocol.Header{Action: f.Header.Action, ResponseCode: code},
		Payload: json.RawMessage(payload),
	}
	if code >= 300 {
		out.Control.Type, out.Control.MessageState, out.Header.ResponseCode, out.Header.ErrorCode = protocol.TypeError, "", 0, code
	}
	p.send(out)
}

// TestDeclaredInbound: a SIP peer's MESSAGE of a receiving messaging
// action goes to every session of the identity as a request of the
// action; the first 2xx answers it, else the first refusal once all
// refused; with no session 480; unanswered, 408 after answer_timeout.
func TestDeclaredInbound(t *testing.T) {
	g, url := newGateway(t, func(c *Config) {
		c.Templates = templatesConfig(t, `
answer_timeout: 1s
actions:
  - action: x-notice
    package: messaging
    headers: {optional: [X-Desk]}
    sip: {method: MESSAGE, content_type: application/x-notice+json, receive: true}
`)
	})
	b1 := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b1.connect("bob@example.com")
	b2 := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b2.connect("bob@example.com")
	ask := func(identity string) fakeResponder {
		r := make(fakeResponder, 1)
		g.askWeb(peerRequest{method: "MESSAGE", mark: "application/x-notice+json", identity: identity, from: "sip:carol@sip.example",
			frame: func(a *templates.Action) *protocol.Frame {
				return a.IncomingFrame("application/x-notice+json", []byte(`{"n":1}`), []sipgw.Header{{Name: "x-desk", Value: "12"}, {Name: "Via", Value: "v"}})
			},
			answer: func(a *templates.Action, f *protocol.Frame) { r.Respond(a.IncomingAnswer(f)) },
			refuse: func(code int, reason string) { r.Respond(sipgw.Answer{Code: code, Reason: reason}) },
		})
		return r
	}
	reqs := func() (*protocol.Frame, *protocol.Frame) {
		f1, f2 := b1.read(), b2.read()
		for _, f := range []*protocol.Frame{f1, f2} {
			expect(t, f, protocol.TypeRequest, "x-notice")
			if desk, _ := f.Header.ExtValue("X-Desk"); string(f.Payload) != `{"n":1}` || desk.Value != "12" || len(f.Header.Ext) != 1 ||
				f.Header.Initiator != "sip:carol@sip.example" || f.Header.Target != "bob@example.com" {
				t.Fatalf("request to bob: %s", f.Marshal())
			}
		}
		return f1, f2
	}

	r := ask("bob@example.com")
	f1, f2 := reqs()
	t.Logf("example request: %s", f1.Marshal())
	answerDeclared(b1, f1, 486, "")
	answerDeclared(b2, f2, 200, `{"seen":true}`)
	if a := r.answer(t); a.Code != 200 {
		t.Fatalf("first round: %+v", a)
	}

	r = ask("bob@example.com")
	f1, f2 = reqs()
	answerDeclared(b2, f2, 603, "")
	answerDeclared(b1, f1, 486, "")
	// Two sessions' frames race each other into the gateway: the first
	// it took is either.
	if a := r.answer(t); a.Code != 603 && a.Code != 486 {
		t.Fatalf("all refused: %+v", a)
	}

	if a := ask("nobody@example.com").answer(t); a.Code != 480 {
		t.Fatalf("no session: %+v", a)
	}

	r = ask("bob@example.com")
	reqs()
	if a := r.answer(t); a.Code != 408 {
		t.Fatalf("unanswered: %+v", a)
	}

	// A session that ends refuses what it holds: with the other's
	// refusal in, the peer gets it at once, not 408 at the timeout; the
	// last session's end gives 480.
	r = ask("bob@example.com")
	f1, _ = reqs()
	answerDeclared(b1, f1, 486, "")
	b2.c.Close(websocket.StatusNormalClosure, "signed out")
	if a := r.answer(t); a.Code != 486 {
		t.Fatalf("one refused, the other signed out: %+v", a)
	}
	r = ask("bob@example.com")
	b1.read()
	b1.c.Close(websocket.StatusNormalClosure, "signed out")
	if a := r.answer(t); a.Code != 480 {
		t.Fatalf("the only session signed out: %+v", a)
	}
	g.inbound.mu.Lock()
	defer g.inbound.mu.Unlock()
	if len(g.inbound.pending) != 0 || g.inbound.n != 0 {
		t.Fatalf("left pending: %d (%d)", len(g.inbound.pending), g.inbound.n)
	}
}
