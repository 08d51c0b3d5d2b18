package call

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// brokenSDP has SDP's look (protocol.HasSDP passes) but not its grammar.
const brokenSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio nine RTP/AVP 0\r\na=sendrecv\r\n"

// expect488 waits for the web side's 488 error to action act, whose
// reason names the SDP problem.
func expect488(t *testing.T, ep *fakeEP, act protocol.Action, corr string) {
	t.Helper()
	f := ep.expect(t, protocol.TypeError, act)
	if f.Header.ErrorCode != protocol.CodeNotAcceptableHere || !strings.Contains(f.Header.Reason, "`nine`") ||
		(corr != "" && f.Control.CorrelationID != corr) {
		t.Fatalf("error %d %q on %q, want 488 naming the SDP problem on %q", f.Header.ErrorCode, f.Header.Reason, f.Control.CorrelationID, corr)
	}
}

// A web SDP that does not parse never reaches SIP: the web side gets
// 488 and the call stays as it was.
func TestSIPWebSDPRefused(t *testing.T) {
	e := newEnv(t, time.Minute)

	// A new call: no INVITE, nothing held.
	a := e.ep("alice@web.example")
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: brokenSDP}}.frame()
	f.Header.Target = "bob@sip.example"
	e.h.HandleFrame(a, f)
	expect488(t, a, protocol.ActionStart, "c1")
	e.assertIdle(t)
	select {
	case fc := <-e.dials:
		t.Fatalf("INVITE sent: %q", fc.dial.SDP)
	default:
	}

	// A PRACK and a re-offer on a call: refused; the good ones that
	// follow are the first SIP operations.
	a, fc := e.outgoing(t)
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, SDP: []byte(sipAnswer), Reliable: true, RSeq: 1})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, p: protocol.CallPayload{SDP: brokenSDP}})
	expect488(t, a, protocol.ActionPrack, "c2")
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 3})
	fc.expectOp(t, "prack")
	a.expect(t, protocol.TypeResponse, protocol.ActionPrack)
	e.answerOut(t, a, fc)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 4, p: protocol.CallPayload{SDP: brokenSDP}})
	expect488(t, a, protocol.ActionStart, "c4")
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 5, p: protocol.CallPayload{SDP: webOffer}})
	if o := fc.expectOp(t, "reoffer"); o.sdp != webOffer {
		t.Fatalf("re-offer %q", o.sdp)
	}
	fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)

	// The answer to a SIP re-offer: the re-INVITE cannot wait, so it
	// gets 488 and the web side learns why.
	fc.pushReoffer(sipOffer)
	ro := a.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: 6, corr: ro.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: brokenSDP}})
	if o := fc.expectOp(t, "ro-reject"); o.code != protocol.CodeNotAcceptableHere {
		t.Fatalf("SIP re-offer rejected with %d", o.code)
	}
	expect488(t, a, protocol.ActionStart, "c6") // the correlation of the web answer
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 7})
	fc.expectOp(t, "hangup")
}

// A web callee's early media or answer that does not parse: the callee
// hears 488, the SIP caller keeps ringing (nothing is sent), and a good
// answer within the ring time still connects the call.
func TestSIPWebAnswerSDPRefused(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	b, sub, corr := eps[0], st[0].Control.SubsessionID, st[0].Control.CorrelationID
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 1, corr: corr, code: 183,
		p: protocol.CallPayload{SDP: brokenSDP}})
	expect488(t, b, protocol.ActionStart, "")
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 2, corr: corr, state: protocol.StateFinal,
		code: 200, p: protocol.CallPayload{SDP: brokenSDP}})
	expect488(t, b, protocol.ActionStart, "")
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 3, corr: corr, state: protocol.StateFinal,
		code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if o := fc.expectOp(t, "answer"); o.sdp != webOffer {
		t.Fatalf("answer %q", o.sdp)
	}
	e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sub, seq: 4})
	fc.expectOp(t, "hangup")
}

// An SIP SDP that does not parse: an INVITE gets 488, a re-INVITE 488
// with the call kept; an 18x or 2xx (or the answer to a web re-offer)
// ends the call, and the web side is told.
func TestSIPSDPRefused(t *testing.T) { synctest.Test(t, testSIPSDPRefused) }
func testSIPSDPRefused(t *testing.T) {
	e := newEnv(t, time.Minute)

	b := e.ep("bob@web.example")
	fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
	fc.offer = []byte(brokenSDP)
	e.h.incomingSIP(fc)
	if o := fc.expectOp(t, "reject"); o.code != protocol.CodeNotAcceptableHere {
		t.Fatalf("INVITE rejected with %d", o.code)
	}
	e.assertIdle(t)
	b.quiet(t)

	for _, code := range []int{183, 200} {
		a, fc := e.outgoing(t)
		kind := sipgw.EventProgress
		if code == 200 {
			kind = sipgw.EventAnswered
		}
		fc.push(sipgw.Event{Kind: kind, Code: code, SDP: []byte(brokenSDP)})
		expect488(t, a, protocol.ActionStart, "c1")
		fc.expectOp(t, "hangup") // CANCEL, or ACK and BYE
		e.assertIdle(t)
		a.quiet(t)
	}

	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	fc.pushReoffer(brokenSDP)
	if o := fc.expectOp(t, "ro-reject"); o.code != protocol.CodeNotAcceptableHere {
		t.Fatalf("SIP re-offer rejected with %d", o.code)
	}
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "reoffer")
	fc.reoffers <- reofferResult{answer: []byte(brokenSDP)}
	expect488(t, a, protocol.ActionStart, "c3")
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	fc.expectOp(t, "hangup")
	e.assertIdle(t)
	a.quiet(t)
}
