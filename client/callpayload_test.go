package client

import (
	"encoding/json"
	"testing"
	"testing/synctest"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// A call frame whose payload does not decode is not taken as an empty
// one: a request is answered 400 with its correlation (and an incoming
// start makes no call), anything else surfaces as EventError.
func TestCallFrameBadPayload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.identity = "bob@example.com"
		c := dial(t, f, nil)
		bad := json.RawMessage(`{"sdp":5}`)
		start := srvCall(protocol.TypeRequest, "s1", "s2", protocol.ActionStart)
		start.Payload = bad
		f.send(start, false)
		if r := f.next(t); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeBadRequest ||
			r.Control.CorrelationID != "s2" || r.Header.Action != protocol.ActionStart || r.Header.Reason == "" {
			t.Fatalf("answer %+v %+v", r.Control, r.Header)
		}
		if ev := nextEvent(t, c); ev.Kind != EventError || ev.Code != protocol.CodeBadRequest || ev.Err == nil {
			t.Fatalf("event %v", ev)
		}

		// A good start, then a trickle message with a bad payload.
		start.Payload = protocol.EncodePayload(protocol.CallPayload{SDP: "offer"})
		f.send(start, false)
		k := waitEvent(t, c, EventIncomingCall).Call
		tr := srvCall(protocol.TypeMessage, "s1", "", protocol.ActionTrickle)
		tr.Payload = json.RawMessage(`{"candidates":["x"]}`)
		f.send(tr, false)
		if ev := nextEvent(t, c); ev.Kind != EventError || ev.Code != protocol.CodeBadRequest || ev.Frame == nil ||
			ev.Frame.Header.Action != protocol.ActionTrickle {
			t.Fatalf("event %v", ev)
		}
		// The call carries on.
		f.send(srvCall(protocol.TypeMessage, "s1", "s7", protocol.ActionShutdown), false)
		wantCall(t, c, k, CallEnded)
	})
}
