package call

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestResendTellsTheCall: a re-offer relayed to bob and sent to him again
// (his node died before writing it) is answered under the correlation
// id it got the second time, which Resend tells the call; one that could
// not be delivered again is answered 480 to its sender, and the call's
// next request goes through. Resend has nothing for a request answered
// meanwhile.
func TestResendTellsTheCall(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
	e.webCall(t, a, b, "c1", 1)
	ro := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 2, p: protocol.CallPayload{SDP: webOffer}}
	e.send(a, ro)
	in := b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if e.h.Resend(b.ID(), in.Control.SubsessionID, "nothing") != nil || e.h.Resend(b.ID(), "other", in.Control.CorrelationID) != nil {
		t.Fatal("Resend found a request under a correlation id or a subsession none has")
	}
	redo := e.h.Resend(b.ID(), in.Control.SubsessionID, in.Control.CorrelationID)
	if redo == nil {
		t.Fatalf("Resend found no request under %s", in.Control.CorrelationID)
	}
	redo("s99", true)
	answer := func(corr string, seq uint64) {
		e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: in.Control.SubsessionID, seq: seq,
			corr: corr, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	}
	answer(in.Control.CorrelationID, 2) // the first sequence's: not the request's now
	answer("s99", 3)
	if r := a.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 || r.Control.CorrelationID != "c2" {
		t.Fatalf("alice's re-offer answered %s", r.Marshal())
	}
	if e.h.Resend(b.ID(), in.Control.SubsessionID, "s99") != nil {
		t.Fatal("Resend found a request answered")
	}

	ro.seq = 3
	e.send(a, ro)
	in = b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.h.Resend(b.ID(), in.Control.SubsessionID, in.Control.CorrelationID)("", false)
	if r := a.expect(t, protocol.TypeError, protocol.ActionStart); r.Header.ErrorCode != protocol.CodeTemporarilyUnavail || r.Control.CorrelationID != "c3" {
		t.Fatalf("alice's re-offer not delivered again answered %s", r.Marshal())
	}
	ro.seq = 4
	e.send(a, ro)
	in = b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	answer(in.Control.CorrelationID, 4)
	if r := a.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 || r.Control.CorrelationID != "c4" {
		t.Fatalf("alice's third re-offer answered %s", r.Marshal())
	}
	hangUp(e, a, "c1", 5)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}
