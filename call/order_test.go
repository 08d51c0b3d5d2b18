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
// case is TestMediaPrackOffer's "200 right behind the PRACK's".

// TestSIPByeBehindReoffer: the phone hangs up while the web side's
// re-offer is still on the worker (its re-INVITE answered and ACKed, the
// answer not yet handed on): the web side gets the re-offer's answer,
// then the shutdown, never the shutdown alone.
func TestSIPByeBehindReoffer(t *testing.T) {
	inBubble(func(t *testing.T) {
		e := newEnv(t, time.Minute)
		a, fc := e.outgoing(t)
		e.answerOut(t, a, fc)
		e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: webOffer}})
		fc.expectOp(t, "reoffer")
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
