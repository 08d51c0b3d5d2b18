package call

import (
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// An extension header mapped to SIP whose value SIP cannot carry fails
// the frame with 400 naming the header; it is neither sent nor dropped
// in silence. Before, the header was left out and the call went on.
func TestSIPHeaderValueRefused(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.h.far.headers["x-app"] = true
	a := e.ep("alice@web.example")
	start := func(value string) {
		f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
		f.Header.Target = "bob@sip.example"
		f.Header.Ext = []protocol.Ext{{Name: "X-App", Value: value}}
		e.h.HandleFrame(a, f)
	}
	for _, v := range []string{"a\u2028Via: SIP/2.0/UDP evil", "\ufeffx", "a\u0085b", "<sip:boss@example.com>"} {
		start(v)
		f := a.expect(t, protocol.TypeError, protocol.ActionStart)
		if f.Header.ErrorCode != 400 || !strings.Contains(f.Header.Reason, `"X-App"`) {
			t.Fatalf("%q: error %d %q, want 400 naming X-App", v, f.Header.ErrorCode, f.Header.Reason)
		}
		select {
		case fc := <-e.dials:
			t.Fatalf("%q: INVITE sent with %+v", v, fc.dial.Headers)
		default:
		}
	}
	e.assertIdle(t)
	// A good value goes through.
	start("café 42")
	fc := e.dialled(t)
	if h := fc.dial.Headers; len(h) != 1 || h[0].Name != "X-App" || h[0].Value != "café 42" {
		t.Fatalf("headers %+v", h)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3, corr: "c1"})
	fc.expectOp(t, "hangup")
}

// A web callee's answer with such a header is refused with 400, and the
// SIP caller keeps ringing: the callee may answer again.
func TestSIPHeaderValueRefusedOnAnswer(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.h.far.headers["x-app"] = true
	fc, eps, starts := e.incoming(t, 1)
	b, start := eps[0], starts[0]
	f := wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: start.Control.SubsessionID, seq: 1,
		corr: start.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Ext = []protocol.Ext{{Name: "X-App", Value: "a\u2029b"}}
	e.h.HandleFrame(b, f)
	if g := b.expect(t, protocol.TypeError, protocol.ActionStart); g.Header.ErrorCode != 400 || !strings.Contains(g.Header.Reason, `"X-App"`) {
		t.Fatalf("error %d %q, want 400 naming X-App", g.Header.ErrorCode, g.Header.Reason)
	}
	e.answerIn(t, fc, b, start)
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}
