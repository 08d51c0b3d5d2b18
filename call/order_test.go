package call

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// The web side hears of a SIP call in the order things happened on the
// SIP side, even where the worker still has the answer of an exchange
// that SIP completed before its next event: the reader holds that event
// until the worker has handed the answer on (read in sip.go). The PRACK's
// case is TestMediaPrackOffer's "200 right behind the PRACK's"; the
// phone's re-offer behind our re-INVITE's answer through rtpengine is
// TestMediaReofferRightAfterOurs.

// TestSIPByeBehindReoffer: the phone hangs up while the web side's
// re-offer is still on the worker (its re-INVITE answered and ACKed, the
// answer not yet handed on): the web side gets the re-offer's answer,
// then the shutdown, never the shutdown alone.
func TestSIPByeBehindReoffer(t *testing.T) {
	inBubble(func(t *testing.T) {
		_, a, fc := reofferInFlight(t)
		fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		// Nothing may reach the web side before the re-offer's answer.
		a.quiet(t)
		fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
		f := a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		if f.Header.ResponseCode != 200 || f.Control.CorrelationID != "c3" || decodeSDP(t, f) != sipAnswer {
			t.Fatalf("re-offer answer %d on %q", f.Header.ResponseCode, f.Control.CorrelationID)
		}
		webShutdown(t, a)
	})(t)
}

// TestSIPReofferBehindOurs: the phone re-offers right behind the ACK of
// our re-INVITE, before the worker is back from it: no glare (RFC 3261
// section 14.2, and sipgw refuses a crossing one itself), so no 491: the
// web side gets its re-offer's answer, then the phone's re-offer.
func TestSIPReofferBehindOurs(t *testing.T) {
	inBubble(func(t *testing.T) {
		e, a, fc := reofferInFlight(t)
		fc.pushReoffer(sipOffer)
		a.quiet(t)
		select {
		case o := <-fc.ops:
			t.Fatalf("the phone's re-offer got %s %d while ours was answered", o.name, o.code)
		default:
		}
		fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
		if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Control.CorrelationID != "c3" || decodeSDP(t, f) != sipAnswer {
			t.Fatalf("re-offer answer on %q", f.Control.CorrelationID)
		}
		takeSIPReoffer(t, e, a, fc, 4)
		fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		webShutdown(t, a)
	})(t)
}

// reofferInFlight: an answered outgoing call whose web side re-offered
// (correlation c3); its re-INVITE waits for fc.reoffers.
func reofferInFlight(t *testing.T) (*env, *fakeEP, *fakeCall) {
	t.Helper()
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "reoffer")
	return e, a, fc
}

// takeSIPReoffer: the web side a gets the SIP side's re-offer (sipOffer)
// and accepts it in its frame seq, which SIP gets.
func takeSIPReoffer(t *testing.T, e *env, a *fakeEP, fc *fakeCall, seq uint64) {
	t.Helper()
	f := a.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if decodeSDP(t, f) != sipOffer {
		t.Fatalf("SIP's re-offer to the web side %q", decodeSDP(t, f))
	}
	e.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: seq, corr: f.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "ro-accept")
}
