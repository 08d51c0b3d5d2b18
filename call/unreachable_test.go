package call

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

func (e *fakeEP) setBroken(on bool) {
	e.mu.Lock()
	e.broken = on
	e.mu.Unlock()
}

// TestRequestToAnUnreachablePeer: a re-offer or a transfer whose relay
// the peer's session does not take (its node dead and not yet known so)
// is answered 480 at once, and the call's next request goes through.
// Before, the request stayed pending on a relay nobody took: its sender
// never had an answer, and every later re-offer of the call, from either
// side, was refused as glare (491).
func TestRequestToAnUnreachablePeer(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
	e.webCall(t, a, b, "c1", 1)
	ro := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 2, p: protocol.CallPayload{SDP: webOffer}}
	tr := wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: "c1", seq: 3}
	b.setBroken(true)
	for _, req := range []wf{ro, tr} {
		f := req.frame()
		f.Header.ReferTo = "carol@web.example"
		e.h.HandleFrame(a, f)
		r := a.expect(t, protocol.TypeError, req.act)
		if r.Header.ErrorCode != protocol.CodeTemporarilyUnavail || r.Control.CorrelationID != protocol.ClientCorrelation(f) {
			t.Fatalf("alice's %s to an unreachable bob answered %s", req.act, r.Marshal())
		}
	}
	b.setBroken(false)
	ro.seq = 4
	e.send(a, ro)
	in := b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if in.Header.Target != "bob@web.example" {
		t.Fatalf("re-offer relayed as %s", in.Marshal())
	}
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: in.Control.SubsessionID, seq: 2,
		corr: in.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if r := a.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 || r.Control.CorrelationID != "c4" {
		t.Fatalf("alice's second re-offer answered %s", r.Marshal())
	}
	hangUp(e, a, "c1", 5)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}
