package call

import (
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// pracked is reliableEarly with the browser's PRACK (no offer) answered:
// the early offer/answer is complete, and the early dialog may take the
// browser's new offer.
func pracked(t *testing.T) (*env, *fakeEngine, *fakeEP, *fakeCall) {
	t.Helper()
	e, eng, a, fc, _ := reliableEarly(t)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1"})
	fc.expectOp(t, "prack") // without an offer the fake answers at once
	a.expect(t, protocol.TypeResponse, protocol.ActionPrack)
	return e, eng, a, fc
}

// TestMediaEarlyOffer: the browser's re-offer before the answer, once it
// PRACKed a reliable 183 that answered its offer, goes to the phone as an
// UPDATE in the early dialog (RFC 3311 section 5.1), through rtpengine
// under the 183's To-tag; the UPDATE's 200 answers the re-offer, and a
// 200 to the INVITE without SDP repeats that answer. A refusal (488, no
// UPDATE in the phone's Allow) answers the re-offer with an error, puts
// the offer/answer in force back in rtpengine, and the call goes on; before the PRACK the re-offer is refused (491) as before.
func TestMediaEarlyOffer(t *testing.T) {
	hold := strings.Replace(webOffer, "a=sendrecv", "a=sendonly", 1)
	reoffer := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, corr: "c2", p: protocol.CallPayload{SDP: hold}}
	t.Run("offer and answer", func(t *testing.T) {
		e, eng, a, fc := pracked(t)
		e.send(a, reoffer)
		if ro := eng.expect(t, "offer"); ro.ToTag != "fork-a" || ro.SDP != hold || ro.ICE != "remove" || ro.TransportProtocol != "RTP/AVP" {
			t.Fatalf("early re-offer to rtpengine %+v", ro)
		}
		if o := fc.expectOp(t, "update"); o.sdp != relayed(hold) {
			t.Fatalf("UPDATE toward SIP with %q", o.sdp)
		}
		answer := strings.Replace(sipAnswer, "a=sendrecv", "a=recvonly", 1)
		fc.reoffers <- reofferResult{answer: []byte(answer)}
		if ra := eng.expect(t, "answer"); ra.ToTag != "fork-a" || ra.SDP != answer || ra.ICE != "force" {
			t.Fatalf("UPDATE's answer to rtpengine %+v", ra)
		}
		f := a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		if f.Control.CorrelationID != "c2" || f.Header.ResponseCode != 200 || decodeSDP(t, f) != relayed(answer) {
			t.Fatalf("re-offer's response on %q, code %d, SDP %q", f.Control.CorrelationID, f.Header.ResponseCode, decodeSDP(t, f))
		}
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, ToTag: "fork-a"})
		answeredThenHangUp(t, e, eng, a, fc, answer)
	})
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		reason string
	}{
		{"488", &sipgw.ResponseError{Code: 488, Reason: "Not Acceptable Here"}, 488, "Not Acceptable Here"},
		{"491", sipgw.ErrGlare, 491, "Request Pending"},
		{"UPDATE not allowed", sipgw.ErrUpdateNotAllowed, 405, "the callee does not allow UPDATE before the answer"},
		{"answered meanwhile", sipgw.ErrCallState, 491, "no early dialog to update"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, eng, a, fc := pracked(t)
			e.send(a, reoffer)
			ro := eng.expect(t, "offer")
			fc.expectOp(t, "update")
			fc.reoffers <- reofferResult{err: tc.err}
			f := a.expect(t, protocol.TypeError, protocol.ActionStart)
			if f.Control.CorrelationID != "c2" || f.Header.ErrorCode != tc.code || f.Header.Reason != tc.reason {
				t.Fatalf("re-offer's error on %q: %d %q, want %d %q", f.Control.CorrelationID, f.Header.ErrorCode, f.Header.Reason, tc.code, tc.reason)
			}
			// rtpengine took the hold offer, never answered: it gets the
			// offer/answer in force again, the browser's first offer and
			// the 183's answer, on the same tags (RFC 3264 §5).
			if o := eng.expect(t, "offer"); o.SDP != webOffer || o.FromTag != ro.FromTag || o.ToTag != "fork-a" {
				t.Fatalf("rollback offer to rtpengine %+v, want the first offer", o)
			}
			if an := eng.expect(t, "answer"); an.SDP != sipAnswer || an.FromTag != ro.FromTag || an.ToTag != "fork-a" {
				t.Fatalf("rollback answer to rtpengine %+v, want the 183's", an)
			}
			// The call goes on: its 200 brings the 183's answer.
			fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, ToTag: "fork-a"})
			answeredThenHangUp(t, e, eng, a, fc, sipAnswer)
		})
	}
	t.Run("before the PRACK", func(t *testing.T) {
		e, eng, a, fc, _ := reliableEarly(t)
		e.send(a, reoffer)
		if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 491 {
			t.Fatalf("re-offer before the PRACK: %d, want 491", f.Header.ErrorCode)
		}
		// Nothing went to SIP or rtpengine before the hang-up.
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 4})
		fc.expectOp(t, "hangup")
		eng.expect(t, "delete")
		eng.idle(t, e)
	})
}

// TestMediaEarlyOfferRollbackHoldsSIP: while a refused early re-offer is
// rolled back in rtpengine, the phone's own early UPDATE offer waits on
// the reader: none of its commands comes between the rollback's offer
// and answer, which would leave rtpengine with the rollback's answer to
// the phone's offer.
func TestMediaEarlyOfferRollbackHoldsSIP(t *testing.T) {
	hold := strings.Replace(webOffer, "a=sendrecv", "a=sendonly", 1)
	e, eng, a, fc := pracked(t)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, corr: "c2", p: protocol.CallPayload{SDP: hold}})
	first := eng.expect(t, "offer")
	fc.expectOp(t, "update")
	gate := make(chan struct{})
	eng.mu.Lock()
	eng.gate = map[string]chan struct{}{"offer": gate}
	eng.mu.Unlock()
	fc.reoffers <- reofferResult{err: sipgw.ErrGlare}
	a.expect(t, protocol.TypeError, protocol.ActionStart)
	if o := eng.expect(t, "offer"); o.SDP != webOffer {
		t.Fatalf("rollback offer %+v", o)
	}
	fc.pushReoffer(sipOffer)
	select {
	case c := <-eng.cmds:
		t.Fatalf("rtpengine %s %+v during the rollback", c.name, c.r)
	case <-time.After(200 * time.Millisecond):
	}
	close(gate)
	if an := eng.expect(t, "answer"); an.SDP != sipAnswer || an.FromTag != first.FromTag {
		t.Fatalf("rollback answer %+v", an)
	}
	if o := eng.expect(t, "offer"); o.SDP != sipOffer || o.FromTag != "fork-a" {
		t.Fatalf("phone's offer after the rollback %+v", o)
	}
	f := a.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: 4, corr: f.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	eng.expect(t, "answer")
	fc.expectOp(t, "ro-accept")
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 5})
	fc.expectOp(t, "hangup")
	eng.expect(t, "delete")
	eng.idle(t, e)
}

// TestMediaReofferRefusedRollback: a browser's re-INVITE the phone
// refuses (491) in an answered call leaves the session as it was, in
// rtpengine too: the first offer and the 200's answer go to it again,
// the 200's To-tag, and the call goes on.
func TestMediaReofferRefusedRollback(t *testing.T) {
	e, eng, a, fc, off := answeredMedia(t, "fork-b")
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionComplete, sub: "c1", seq: 2, corr: "c1"})
	fc.expectOp(t, "ack")
	hold := strings.Replace(webOffer, "a=sendrecv", "a=sendonly", 1)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, corr: "c3", p: protocol.CallPayload{SDP: hold}})
	eng.expect(t, "offer")
	fc.expectOp(t, "reoffer")
	fc.reoffers <- reofferResult{err: sipgw.ErrGlare}
	if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 491 {
		t.Fatalf("re-offer's error %d", f.Header.ErrorCode)
	}
	if o := eng.expect(t, "offer"); o.SDP != webOffer || o.FromTag != off.FromTag || o.ToTag != "fork-b" {
		t.Fatalf("rollback offer to rtpengine %+v, want the first offer", o)
	}
	if an := eng.expect(t, "answer"); an.SDP != sipAnswer || an.ToTag != "fork-b" {
		t.Fatalf("rollback answer to rtpengine %+v, want the 200's", an)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 4})
	fc.expectOp(t, "hangup")
	eng.expect(t, "delete")
	eng.idle(t, e)
}
