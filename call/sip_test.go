package call

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// The web side of SIP calls (sip.go) against fakes of the SIP legs
// (sip_fake_test.go). Every test ends with env.assertIdle: no call, no
// subsession, no quota, no goroutine left.

// webFailed checks the web caller got error/start with code.
func webFailed(code int) func(*testing.T, *fakeEP) {
	return func(t *testing.T, a *fakeEP) {
		t.Helper()
		f := a.expect(t, protocol.TypeError, protocol.ActionStart)
		if f.Header.ErrorCode != code || f.Control.CorrelationID != "c1" {
			t.Fatalf("error %d on %q, want %d on c1", f.Header.ErrorCode, f.Control.CorrelationID, code)
		}
	}
}

func webShutdown(t *testing.T, a *fakeEP) {
	t.Helper()
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

func sipEnd(end sipgw.EndCause, code int) func(*testing.T, *env, *fakeEP, *fakeCall) {
	return func(t *testing.T, e *env, a *fakeEP, fc *fakeCall) { fc.end(sipgw.Event{End: end, Code: code}) }
}

// Every way an outgoing call (web caller, SIP callee) ends, from either
// side, ringing or answered: the other side hears of it and nothing is
// left.
func TestSIPOutgoingEnds(t *testing.T) {
	webBye := func(t *testing.T, e *env, a *fakeEP, fc *fakeCall) {
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3, corr: "c1"})
	}
	sessionEnded := func(t *testing.T, e *env, a *fakeEP, fc *fakeCall) { e.h.SessionEnded(a) }
	for _, tc := range []struct {
		name     string
		answered bool
		ring     time.Duration
		end      func(*testing.T, *env, *fakeEP, *fakeCall)
		web      func(*testing.T, *fakeEP) // what the web caller must see
		hangup   bool                      // the SIP side must be hung up
	}{
		{name: "web cancel", end: webBye, hangup: true},
		{name: "web bye", answered: true, end: webBye, hangup: true},
		{name: "web session ends ringing", end: sessionEnded, hangup: true},
		{name: "web session ends answered", answered: true, end: sessionEnded, hangup: true},
		{name: "ring timeout", ring: 30 * time.Millisecond, web: webFailed(480), hangup: true},
		{name: "sip busy", end: sipEnd(sipgw.EndRejected, 486), web: webFailed(486)},
		{name: "sip declined 603", end: sipEnd(sipgw.EndRejected, 603), web: webFailed(603)},
		{name: "sip cancelled", end: sipEnd(sipgw.EndCancelled, 487), web: webFailed(487)},
		{name: "sip timeout ringing", end: sipEnd(sipgw.EndTimeout, 408), web: webFailed(408)},
		{name: "sip error ringing", end: sipEnd(sipgw.EndError, 500), web: webFailed(503)},
		{name: "sip shutdown ringing", end: sipEnd(sipgw.EndShutdown, 503), web: webFailed(503)},
		{name: "sip bye", answered: true, end: sipEnd(sipgw.EndRemoteBye, 200), web: webShutdown},
		{name: "sip timeout answered", answered: true, end: sipEnd(sipgw.EndTimeout, 408), web: webShutdown},
		{name: "sip shutdown answered", answered: true, end: sipEnd(sipgw.EndShutdown, 503), web: webShutdown},
		{name: "sip session expired", answered: true, end: func(t *testing.T, e *env, a *fakeEP, fc *fakeCall) {
			fc.end(sipgw.Event{End: sipgw.EndSessionExpired, Code: 481, Reason: "Session refresh failed: 481"})
		}, web: func(t *testing.T, a *fakeEP) {
			// The web side learns why: no BYE came from the peer.
			if f := a.expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Header.Reason != "Session refresh failed: 481" {
				t.Fatalf("shutdown reason %q", f.Header.Reason)
			}
		}},
		{name: "sip events closed without end", end: func(t *testing.T, e *env, a *fakeEP, fc *fakeCall) {
			fc.mu.Lock()
			fc.ended = true
			close(fc.events)
			close(fc.done)
			fc.mu.Unlock()
		}, web: webFailed(503)},
	} {
		t.Run(tc.name, inBubble(func(t *testing.T) {
			ring := tc.ring
			if ring == 0 {
				ring = time.Minute
			}
			e := newEnv(t, ring)
			a, fc := e.outgoing(t)
			if !fc.dial.Offer100rel || !fc.dial.Trickle || fc.dial.Target != "bob@sip.example" {
				t.Fatalf("dial options %+v", fc.dial)
			}
			fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 180})
			if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 180 ||
				f.Control.MessageState != protocol.StateSubsequent {
				t.Fatalf("ringing %d %s", f.Header.ResponseCode, f.Control.MessageState)
			}
			if tc.answered {
				e.answerOut(t, a, fc)
			}
			if tc.end != nil {
				tc.end(t, e, a, fc)
			}
			if tc.hangup {
				fc.expectOp(t, "hangup")
			}
			if tc.web != nil {
				tc.web(t, a)
			}
			e.assertIdle(t)
			a.quiet(t)
		}))
	}
}

// A refused INVITE: the web caller gets the code, nothing is left.
func TestSIPDialFails(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{&sipgw.ResponseError{Code: 404, Reason: "Not Found"}, 404},
		{sipgw.ErrInvalidInput, 400},
		{sipgw.ErrOverloaded, 503},
		{sipgw.ErrClosed, 503},
		{errors.New("transport down"), 503},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			e := newEnv(t, time.Minute)
			e.dialErr.Store(&tc.err)
			a := e.ep("alice@web.example")
			f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
			f.Header.Target = "bob@sip.example"
			e.h.HandleFrame(a, f)
			webFailed(tc.code)(t, a)
			e.assertIdle(t)
		})
	}
}

// Every way an incoming call (SIP caller, two forked web sessions) ends.
func TestSIPIncomingEnds(t *testing.T) {
	type step func(*testing.T, *env, *fakeCall, []*fakeEP, []*protocol.Frame)
	decline := func(i, code int) step {
		return func(t *testing.T, e *env, fc *fakeCall, eps []*fakeEP, st []*protocol.Frame) {
			e.send(eps[i], wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: st[i].Control.SubsessionID, seq: 1,
				corr: st[i].Control.CorrelationID, code: code})
		}
	}
	giveUp := func(i int) step {
		return func(t *testing.T, e *env, fc *fakeCall, eps []*fakeEP, st []*protocol.Frame) {
			e.send(eps[i], wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: st[i].Control.SubsessionID, seq: 5,
				corr: st[i].Control.CorrelationID})
		}
	}
	gone := func(i int) step {
		return func(t *testing.T, e *env, fc *fakeCall, eps []*fakeEP, st []*protocol.Frame) {
			e.h.SessionEnded(eps[i])
		}
	}
	sip := func(end sipgw.EndCause, code int) step {
		return func(t *testing.T, e *env, fc *fakeCall, eps []*fakeEP, st []*protocol.Frame) {
			fc.end(sipgw.Event{End: end, Code: code})
		}
	}
	shut := func(eps ...int) []int { return eps }
	for _, tc := range []struct {
		name     string
		answered bool // eps[0] answered, eps[1] was told shutdown
		ring     time.Duration
		steps    []step
		reject   int   // the SIP side must be rejected with this code
		hangup   bool  // or hung up after the answer
		shutdown []int // the web sessions that must get shutdown
	}{
		{name: "all busy", steps: []step{decline(0, 486), decline(1, 486)}, reject: 486},
		{name: "one declines everywhere", steps: []step{decline(0, 603)}, reject: 603, shutdown: shut(1)},
		{name: "one gives up one busy", steps: []step{giveUp(0), decline(1, 486)}, reject: 486},
		{name: "sessions end", steps: []step{gone(0), gone(1)}, reject: 480},
		{name: "ring timeout", ring: 30 * time.Millisecond, reject: 480, shutdown: shut(0, 1)},
		{name: "sip cancel", steps: []step{sip(sipgw.EndCancelled, 487)}, shutdown: shut(0, 1)},
		{name: "sip shutdown ringing", steps: []step{sip(sipgw.EndShutdown, 503)}, shutdown: shut(0, 1)},
		{name: "web bye", answered: true, steps: []step{giveUp(0)}, hangup: true},
		{name: "web session ends answered", answered: true, steps: []step{gone(0)}, hangup: true},
		{name: "loser's session ends", answered: true, steps: []step{gone(1), giveUp(0)}, hangup: true},
		{name: "sip bye", answered: true, steps: []step{sip(sipgw.EndRemoteBye, 200)}, shutdown: shut(0)},
		{name: "sip no ack", answered: true, steps: []step{sip(sipgw.EndTimeout, 408)}, shutdown: shut(0)},
		{name: "sip error answered", answered: true, steps: []step{sip(sipgw.EndError, 500)}, shutdown: shut(0)},
	} {
		t.Run(tc.name, inBubble(func(t *testing.T) {
			ring := tc.ring
			if ring == 0 {
				ring = time.Minute
			}
			e := newEnv(t, ring)
			fc, eps, st := e.incoming(t, 2)
			for i, f := range st {
				if string(decodeSDP(t, f)) != sipOffer || f.Header.Target != "bob@web.example" || f.Header.Initiator != "carol@sip.example" {
					t.Fatalf("start %d: %q from %q to %q", i, decodeSDP(t, f), f.Header.Initiator, f.Header.Target)
				}
			}
			if tc.answered {
				e.send(eps[0], wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st[0].Control.SubsessionID, seq: 1,
					corr: st[0].Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
				if o := fc.expectOp(t, "answer"); o.sdp != webOffer {
					t.Fatalf("answer %q", o.sdp)
				}
				// The fork that lost hears it at once.
				if f := eps[1].expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Control.CorrelationID != st[1].Control.CorrelationID {
					t.Fatalf("loser's shutdown on %q", f.Control.CorrelationID)
				}
				fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
				if f := eps[0].expect(t, protocol.TypeMessage, protocol.ActionComplete); f.Control.CorrelationID != st[0].Control.CorrelationID {
					t.Fatalf("complete on %q", f.Control.CorrelationID)
				}
			}
			for _, s := range tc.steps {
				s(t, e, fc, eps, st)
			}
			switch {
			case tc.reject != 0:
				if o := fc.expectOp(t, "reject"); o.code != tc.reject {
					t.Fatalf("rejected with %d, want %d", o.code, tc.reject)
				}
			case tc.hangup:
				fc.expectOp(t, "hangup")
			}
			for _, i := range tc.shutdown {
				eps[i].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
			}
			e.assertIdle(t)
			for _, ep := range eps {
				ep.quiet(t)
			}
			select {
			case o := <-fc.ops:
				t.Fatalf("unexpected SIP operation %s", o.name)
			default:
			}
		}))
	}
}

func decodeSDP(t *testing.T, f *protocol.Frame) string {
	t.Helper()
	var p protocol.CallPayload
	if err := protocol.DecodePayload(f.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p.SDP
}

// An INVITE without SDP is refused (browsers need the offer).
func TestSIPIncomingWithoutOffer(t *testing.T) { synctest.Test(t, testSIPIncomingWithoutOffer) }
func testSIPIncomingWithoutOffer(t *testing.T) {
	e := newEnv(t, time.Minute)
	b := e.ep("bob@web.example")
	fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
	e.h.incomingSIP(fc)
	if o := fc.expectOp(t, "reject"); o.code != 488 {
		t.Fatalf("reject %d", o.code)
	}
	e.assertIdle(t)
	b.quiet(t)
}

// Glare, web first: the web side's re-INVITE has gone when the SIP
// side's arrives. sipgw answers 491 itself to a re-INVITE that crosses
// ours, so one that reaches the call came before ours went, which then
// fails at once with 491 (ErrGlare): the web side hears 491, then gets
// the SIP side's re-offer, held until then. (One that comes after our
// re-INVITE's answer waits for the web side's answer the same way:
// TestMediaReofferRightAfterOurs.)
func TestSIPGlareWebFirst(t *testing.T) {
	e, a, fc := reofferInFlight(t)
	fc.pushReoffer(sipOffer)
	fc.reoffers <- reofferResult{err: sipgw.ErrGlare}
	if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 491 || f.Control.CorrelationID != "c3" {
		t.Fatalf("glare error %d on %q", f.Header.ErrorCode, f.Control.CorrelationID)
	}
	takeSIPReoffer(t, e, a, fc, 4)
	fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	a.expect(t, protocol.TypeMessage, protocol.ActionComplete)
	// The SIP side refuses a re-offer with 491 (its own crossed ours).
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 5, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "reoffer")
	fc.reoffers <- reofferResult{err: sipgw.ErrGlare}
	if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 491 || f.Control.CorrelationID != "c5" {
		t.Fatalf("glare error %d on %q", f.Header.ErrorCode, f.Control.CorrelationID)
	}
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	webShutdown(t, a)
}

// Glare, SIP first: the SIP side's re-offer waits for the web answer
// when the web side re-offers: the web re-offer gets 491; the SIP
// re-offer is then answered, and its ACK completes it.
func TestSIPGlareSIPFirst(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	b := eps[0]
	e.answerIn(t, fc, b, st[0])
	fc.pushReoffer(sipOffer)
	ro := b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if decodeSDP(t, ro) != sipOffer || ro.Control.SubsessionID != st[0].Control.SubsessionID {
		t.Fatalf("re-offer %q on %s", decodeSDP(t, ro), ro.Control.SubsessionID)
	}
	sub := st[0].Control.SubsessionID
	e.send(b, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: sub, seq: 2, p: protocol.CallPayload{SDP: webOffer}})
	if f := b.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 491 || f.Control.CorrelationID != "c2" {
		t.Fatalf("web re-offer: %s %d on %q", f.Control.Type, f.Header.ErrorCode, f.Control.CorrelationID)
	}
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 3, corr: ro.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if o := fc.expectOp(t, "ro-accept"); o.sdp != webOffer {
		t.Fatalf("accepted with %q", o.sdp)
	}
	fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	if f := b.expect(t, protocol.TypeMessage, protocol.ActionComplete); f.Control.CorrelationID != ro.Control.CorrelationID {
		t.Fatalf("complete on %q", f.Control.CorrelationID)
	}
	// A second SIP re-offer refused by the web side: its code goes back.
	fc.pushReoffer(sipOffer)
	ro = b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.send(b, wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: sub, seq: 4, corr: ro.Control.CorrelationID, code: 488})
	if o := fc.expectOp(t, "ro-reject"); o.code != 488 {
		t.Fatalf("rejected with %d", o.code)
	}
	e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sub, seq: 5})
	fc.expectOp(t, "hangup")
}

// A SIP re-offer that arrives after the call ended on the web side gets
// 481; one on a call whose web session cannot take it gets 480.
func TestSIPReofferUnanswerable(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	b := eps[0]
	e.answerIn(t, fc, b, st[0])
	b.mu.Lock()
	b.broken = true
	b.mu.Unlock()
	fc.pushReoffer(sipOffer)
	if o := fc.expectOp(t, "ro-reject"); o.code != 480 {
		t.Fatalf("rejected with %d", o.code)
	}
	b.mu.Lock()
	b.broken = false
	b.mu.Unlock()
	e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: st[0].Control.SubsessionID, seq: 2})
	fc.expectOp(t, "hangup")
}

// A web cancel races the SIP answer, in both orders and concurrently:
// the SIP side is always hung up (CANCEL, or BYE after the ACK) and the
// web caller hears nothing after its shutdown but the answer it may
// already have been sent.
func TestSIPCancelRacesAnswer(t *testing.T) {
	for _, order := range []string{"cancel first", "answer first", "concurrent"} {
		t.Run(order, inBubble(func(t *testing.T) {
			for range 20 {
				e := newEnv(t, time.Minute)
				a, fc := e.outgoing(t)
				cancel := func() {
					e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 2, corr: "c1"})
				}
				answer := func() { fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer)}) }
				switch order {
				case "cancel first":
					cancel()
					answer()
				case "answer first":
					answer()
					a.expect(t, protocol.TypeResponse, protocol.ActionStart)
					cancel()
				default:
					var wg sync.WaitGroup
					wg.Go(cancel)
					wg.Go(answer)
					wg.Wait()
				}
				fc.expectOp(t, "hangup")
				e.assertIdle(t)
				if order == "cancel first" {
					a.quiet(t)
				}
				for len(a.frames) > 0 {
					if f := <-a.frames; f.Header.Action != protocol.ActionStart || f.Control.Type != protocol.TypeResponse {
						t.Fatalf("after the cancel: %s/%s", f.Control.Type, f.Header.Action)
					}
				}
			}
		}))
	}
}

// A SIP CANCEL races the web answer: the answer goes to sipgw (which
// refuses it once cancelled) or is dropped; the web side is told
// shutdown either way.
func TestSIPIncomingCancelRacesAnswer(t *testing.T) {
	synctest.Test(t, testSIPIncomingCancelRacesAnswer)
}
func testSIPIncomingCancelRacesAnswer(t *testing.T) {
	for range 20 {
		e := newEnv(t, time.Minute)
		fc, eps, st := e.incoming(t, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			e.send(eps[0], wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st[0].Control.SubsessionID, seq: 1,
				corr: st[0].Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
		})
		wg.Go(func() { fc.end(sipgw.Event{End: sipgw.EndCancelled, Code: 487}) })
		wg.Wait()
		eps[0].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		e.assertIdle(t)
		eps[0].quiet(t)
	}
}

// An INVITE for a session whose socket is down waits for the resume:
// nothing is rejected meanwhile, and the call is answered after it.
func TestSIPIncomingWhileSocketDown(t *testing.T) { synctest.Test(t, testSIPIncomingWhileSocketDown) }
func testSIPIncomingWhileSocketDown(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, _ := e.incoming(t, 1, func(ep *fakeEP) { ep.setDown() })
	b := eps[0]
	b.quiet(t)
	b.resume()
	start := b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	// The worker runs SIP operations in order: a reject queued while the
	// socket was down would come before this answer.
	e.answerIn(t, fc, b, start)
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// ... but not for ever: the ring timeout still ends it, and the
// shutdown waits in the session with the start.
func TestSIPIncomingSocketDownRingTimeout(t *testing.T) {
	synctest.Test(t, testSIPIncomingSocketDownRingTimeout)
}
func testSIPIncomingSocketDownRingTimeout(t *testing.T) {
	e := newEnv(t, 30*time.Millisecond)
	fc, eps, _ := e.incoming(t, 1, func(ep *fakeEP) { ep.setDown() })
	if o := fc.expectOp(t, "reject"); o.code != 480 {
		t.Fatalf("reject %d", o.code)
	}
	e.assertIdle(t)
	eps[0].resume()
	start := eps[0].expect(t, protocol.TypeRequest, protocol.ActionStart)
	if f := eps[0].expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Control.CorrelationID != start.Control.CorrelationID {
		t.Fatalf("shutdown on %q", f.Control.CorrelationID)
	}
}

// A SIP call for an identity whose session sleeps in standby rings the
// caller (180) at once, while a push wakes the session (docs/protocol.md
// §4.9); the session's own ringing, once it resumes, is no second 180.
func TestSIPIncomingAsleep(t *testing.T) { synctest.Test(t, testSIPIncomingAsleep) }
func testSIPIncomingAsleep(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, _ := e.incoming(t, 1, func(ep *fakeEP) { ep.setDown(); ep.setAsleep(true) })
	if o := fc.expectOp(t, "progress"); o.code != 180 || o.sdp != "" {
		t.Fatalf("progress while asleep: %+v", o)
	}
	b := eps[0]
	b.setAsleep(false)
	b.resume()
	start := b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	sub, corr := start.Control.SubsessionID, start.Control.CorrelationID
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 1, corr: corr, state: protocol.StateSubsequent})
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 2, corr: corr,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "answer")
	fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	b.expect(t, protocol.TypeMessage, protocol.ActionComplete)
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// A SIP call for a session in standby that no push wakes in time ends
// with 480 once the ring timeout passes: the caller hears ringing for a
// bounded time, never forever.
func TestSIPIncomingAsleepRingTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, time.Second)
		fc, _, _ := e.incoming(t, 1, func(ep *fakeEP) { ep.setDown(); ep.setAsleep(true) })
		if o := fc.expectOp(t, "progress"); o.code != 180 {
			t.Fatalf("progress while asleep: %+v", o)
		}
		start := time.Now()
		if o := fc.expectOp(t, "reject"); o.code != 480 {
			t.Fatalf("reject %+v", o)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("rejected after %s", d)
		}
		e.assertIdle(t)
	})
}

// Web early media on an incoming call goes as a reliable 183 (sipgw
// makes it reliable when the caller supports 100rel); ringing without
// SDP as a plain 180, once.
func TestSIPIncomingEarlyMediaReliable(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	b, sub, corr := eps[0], st[0].Control.SubsessionID, st[0].Control.CorrelationID
	ring := wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 1, corr: corr, state: protocol.StateSubsequent}
	e.send(b, ring)
	ring.seq = 2
	e.send(b, ring) // a second ringing is no second 180
	ring.seq, ring.code, ring.p = 3, 183, protocol.CallPayload{SDP: webOffer}
	e.send(b, ring)
	if o := fc.expectOp(t, "progress"); o.code != 180 || o.reliable || o.sdp != "" || !o.trickle {
		t.Fatalf("ringing: %+v", o)
	}
	if o := fc.expectOp(t, "progress"); o.code != 183 || !o.reliable || o.sdp != webOffer {
		t.Fatalf("early media: %+v", o)
	}
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 4, corr: corr,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "answer")
	// The caller's PRACK is sipgw's business: nothing reaches the web.
	fc.push(sipgw.Event{Kind: sipgw.EventPrack, RSeq: 1})
	fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	b.expect(t, protocol.TypeMessage, protocol.ActionComplete)
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// A reliable 183 toward the web caller waits for its PRACK; a reliable
// 180 is acknowledged by the gateway itself.
func TestSIPOutgoingPrack(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 180, Reliable: true, RSeq: 1})
	fc.expectOp(t, "prack")
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, SDP: []byte(sipAnswer), Reliable: true, RSeq: 2})
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 183 || decodeSDP(t, f) != sipAnswer {
		t.Fatalf("early media %d", f.Header.ResponseCode)
	}
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1"})
	fc.expectOp(t, "prack")
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionPrack); f.Header.ResponseCode != 0 || f.Control.CorrelationID != "c1" {
		t.Fatalf("prack answer %d on %q", f.Header.ResponseCode, f.Control.CorrelationID)
	}
	// Answered without SDP in the 200: the early SDP is the answer.
	fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200})
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 200 || decodeSDP(t, f) != sipAnswer {
		t.Fatalf("answer %d %q", f.Header.ResponseCode, decodeSDP(t, f))
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3})
	fc.expectOp(t, "hangup")
}

// Trickle toward a SIP peer that announced trickle-ice: candidates sent
// before the ACK wait for it, then go in one INFO (RFC 8840 body); later
// ones go at once.
func TestSIPTrickleInfo(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	fc.setPeerTrickle()
	trickle := func(seq uint64, frag string) {
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: "c1", seq: seq, p: protocol.CallPayload{Candidates: frag}})
	}
	trickle(2, "a=mid:0\r\n"+cand1+"\r\n")
	e.answerOut(t, a, fc) // seq 2 again: the fake does not deduplicate
	o := fc.expectOp(t, "info")
	if o.info.Package != sipgw.InfoPackageTrickleICE || o.info.ContentType != sipgw.ContentTypeTrickleICE {
		t.Fatalf("INFO %+v", o.info)
	}
	want := "a=ice-ufrag:U1\r\na=ice-pwd:P1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" + cand1 + "\r\n"
	if string(o.info.Body) != want {
		t.Fatalf("INFO body\n%q\nwant\n%q", o.info.Body, want)
	}
	// A browser's bare candidate strings, run together.
	trickle(4, "a=mid:0\r\n"+strings.TrimPrefix(cand2, "a=")+strings.TrimPrefix(cand1, "a=")+"\r\na=end-of-candidates\r\n")
	o = fc.expectOp(t, "info")
	if !strings.Contains(string(o.info.Body), "a=mid:0\r\n"+cand2+"\r\n"+cand1+"\r\na=end-of-candidates\r\n") {
		t.Fatalf("INFO body %q", o.info.Body)
	}
	// The peer's candidates come back as a web trickle.
	fc.push(sipgw.Event{Kind: sipgw.EventInfo, InfoPackage: sipgw.InfoPackageTrickleICE, ContentType: sipgw.ContentTypeTrickleICE,
		Body: []byte("a=ice-ufrag:X\r\na=ice-pwd:Y\r\nm=audio 9 RTP/AVP 0\r\na=mid:audio\r\n" + cand2 + "\r\na=end-of-candidates\r\n")})
	f := a.expect(t, protocol.TypeMessage, protocol.ActionTrickle)
	var p protocol.CallPayload
	_ = protocol.DecodePayload(f.Payload, &p)
	if p.Candidates != "a=mid:audio\r\n"+cand2+"\r\na=end-of-candidates\r\n" || f.Header.Initiator != "bob@sip.example" {
		t.Fatalf("trickle to the web %q from %q", p.Candidates, f.Header.Initiator)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 5})
	fc.expectOp(t, "hangup")
}

// Trickle toward a SIP peer without trickle-ice: no INFO; the candidates
// are added to the web side's next re-offer, where the browser left them
// out, and dropped by an ICE restart.
func TestSIPTrickleFolded(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	trickle := func(seq uint64, frag string) {
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: "c1", seq: seq, p: protocol.CallPayload{Candidates: frag}})
	}
	trickle(3, "a=mid:0\r\n"+cand1+"\r\n")
	trickle(4, "a=mid:0\r\n"+cand2+"\r\na=end-of-candidates\r\n")
	reoffer := strings.Replace(webOffer, "a=sendrecv\r\n", "a=sendonly\r\n"+cand1+"\r\n", 1)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 5, p: protocol.CallPayload{SDP: reoffer}})
	o := fc.expectOp(t, "reoffer")
	if want := reoffer + cand2 + "\r\na=end-of-candidates\r\n"; o.sdp != want {
		t.Fatalf("re-offer\n%q\nwant\n%q", o.sdp, want)
	}
	fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	// An ICE restart: the old generation's candidates are not folded.
	trickle(6, "a=mid:0\r\n"+cand2+"\r\n")
	restart := strings.Replace(webOffer, "U1", "U2", 1)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 7, p: protocol.CallPayload{SDP: restart}})
	if o := fc.expectOp(t, "reoffer"); o.sdp != restart {
		t.Fatalf("restart re-offer %q", o.sdp)
	}
	fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 8})
	fc.expectOp(t, "hangup")
}

// An incoming call: a forked callee's candidates wait until it wins,
// then go after the ACK; wsc.js callees get no trickle and announce none.
func TestSIPTrickleIncoming(t *testing.T) { synctest.Test(t, testSIPTrickleIncoming) }
func testSIPTrickleIncoming(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	fc.setPeerTrickle()
	b, sub := eps[0], st[0].Control.SubsessionID
	e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: sub, seq: 1, p: protocol.CallPayload{Candidates: "a=mid:0\r\n" + cand1 + "\r\n"}})
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: sub, seq: 2, corr: st[0].Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if o := fc.expectOp(t, "answer"); !o.trickle {
		t.Fatal("the 200 does not announce trickle-ice")
	}
	fc.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	b.expect(t, protocol.TypeMessage, protocol.ActionComplete)
	if o := fc.expectOp(t, "info"); !strings.Contains(string(o.info.Body), "a=mid:0\r\n"+cand1) {
		t.Fatalf("INFO %q", o.info.Body)
	}
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)

	fc, eps, st = e.incoming(t, 1, func(ep *fakeEP) { ep.oracle = true })
	o, sub := eps[0], st[0].Control.SubsessionID
	e.answerIn(t, fc, o, st[0])
	fc.push(sipgw.Event{Kind: sipgw.EventInfo, ContentType: sipgw.ContentTypeTrickleICE, Body: []byte("a=mid:0\r\n" + cand1 + "\r\n")})
	e.send(o, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sub, seq: 2})
	fc.expectOp(t, "hangup")
	e.assertIdle(t)
	o.quiet(t) // no trickle for wsc.js
}

// DTMF and transfer from the web side, DTMF and REFER from SIP.
func TestSIPDTMFAndTransfer(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionDTMF, sub: "c1", seq: 3, p: protocol.CallPayload{Digits: "12", Duration: 100}})
	for _, d := range []string{"1", "2"} {
		if o := fc.expectOp(t, "dtmf"); o.sdp != d {
			t.Fatalf("digit %q, want %q", o.sdp, d)
		}
	}
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: "c1", seq: 4}.frame()
	f.Header.ReferTo = "sip:carol@sip.example"
	e.h.HandleFrame(a, f)
	if o := fc.expectOp(t, "transfer"); o.sdp != "sip:carol@sip.example" {
		t.Fatalf("transfer to %q", o.sdp)
	}
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionTransfer); f.Header.ResponseCode != 202 {
		t.Fatalf("transfer answer %d", f.Header.ResponseCode)
	}
	fc.push(sipgw.Event{Kind: sipgw.EventInfo, ContentType: "application/dtmf-relay", Digit: "5", Duration: 160})
	if f := a.expect(t, protocol.TypeMessage, protocol.ActionDTMF); !strings.Contains(string(f.Payload), `"5"`) {
		t.Fatalf("dtmf %s", f.Payload)
	}
	fc.push(sipgw.Event{Kind: sipgw.EventTransferProgress, Code: 100, Reason: "Trying"})
	if f := a.expect(t, protocol.TypeMessage, protocol.ActionTransfer); f.Header.ResponseCode != 100 || f.Control.CorrelationID != "c4" {
		t.Fatalf("transfer progress %d correlation %q", f.Header.ResponseCode, f.Control.CorrelationID)
	}
	fc.pushRefer("sip:dave@sip.example")
	f = a.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	if f.Header.ReferTo != "sip:dave@sip.example" {
		t.Fatalf("refer to %q", f.Header.ReferTo)
	}
	e.send(a, wf{typ: protocol.TypeError, act: protocol.ActionTransfer, sub: "c1", seq: 5, corr: f.Control.CorrelationID, code: 603})
	if o := fc.expectOp(t, "refer-reject"); o.code != 603 {
		t.Fatalf("refer rejected with %d", o.code)
	}
	fc.pushRefer("sip:erin@sip.example")
	f = a.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	e.send(a, wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, sub: "c1", seq: 6, corr: f.Control.CorrelationID, state: protocol.StateFinal, code: 202})
	fc.expectOp(t, "refer-accept")
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTransfer, sub: "c1", seq: 7, corr: f.Control.CorrelationID, code: 180})
	if o := fc.expectOp(t, "notify"); o.code != 180 {
		t.Fatalf("notify %d", o.code)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTransfer, sub: "c1", seq: 8, corr: f.Control.CorrelationID, code: 200})
	if o := fc.expectOp(t, "notify"); o.code != 200 || o.sdp != "OK" {
		t.Fatalf("notify %d %q", o.code, o.sdp)
	}
	// The transferor's NOTIFY 200 ends the old call (RFC 5589 section 6).
	fc.push(sipgw.Event{Kind: sipgw.EventTransferProgress, Code: 200, Reason: "OK", Final: true})
	if f := a.expect(t, protocol.TypeMessage, protocol.ActionTransfer); f.Header.ResponseCode != 200 {
		t.Fatalf("transfer progress %d", f.Header.ResponseCode)
	}
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	fc.expectOp(t, "hangup")
}

// A REFER toward wsc.js, which knows no transfer, is declined.
func TestSIPReferToOracleDeclined(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1, func(ep *fakeEP) { ep.oracle = true })
	e.answerIn(t, fc, eps[0], st[0])
	fc.pushRefer("sip:dave@sip.example")
	if o := fc.expectOp(t, "refer-reject"); o.code != 603 {
		t.Fatalf("refer rejected with %d", o.code)
	}
	e.send(eps[0], wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: st[0].Control.SubsessionID, seq: 2})
	fc.expectOp(t, "hangup")
}

// Without a SIP side, an incoming SIP call is refused with 480.
func TestSIPNotConfigured(t *testing.T) {
	h := NewHandler(&fakeDir{m: map[string][]Endpoint{}}, nil)
	fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
	h.incomingSIP(fc)
	if o := fc.expectOp(t, "reject"); o.code != 480 {
		t.Fatalf("reject %d", o.code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// Each web-side end crossing each SIP-side end, run concurrently: in
// either order the call is gone from both sides, and the web side hears
// at most the SIP side's report of its own end.
func TestSIPCrossingEnds(t *testing.T) {
	sipEnds := []sipgw.Event{
		{End: sipgw.EndRejected, Code: 486}, {End: sipgw.EndCancelled, Code: 487}, {End: sipgw.EndRemoteBye, Code: 200},
		{End: sipgw.EndTimeout, Code: 408}, {End: sipgw.EndError, Code: 500}, {End: sipgw.EndShutdown, Code: 503},
	}
	reportOnly := func(t *testing.T, ep *fakeEP) {
		t.Helper()
		for len(ep.frames) > 0 {
			f := <-ep.frames
			if !(f.Control.Type == protocol.TypeError && f.Header.Action == protocol.ActionStart) &&
				!(f.Control.Type == protocol.TypeMessage && f.Header.Action == protocol.ActionShutdown) {
				t.Fatalf("%s: %s/%s after the end", ep.id, f.Control.Type, f.Header.Action)
			}
		}
	}
	for _, answered := range []bool{false, true} {
		for _, webEnd := range []string{"shutdown", "session"} {
			for _, ev := range sipEnds {
				name := webEnd + "/" + ev.End.String()
				if answered {
					name = "answered/" + name
				}
				t.Run("outgoing/"+name, func(t *testing.T) {
					e := newEnv(t, time.Minute)
					a, fc := e.outgoing(t)
					if answered {
						e.answerOut(t, a, fc)
					}
					var wg sync.WaitGroup
					wg.Go(func() {
						if webEnd == "session" {
							e.h.SessionEnded(a)
							return
						}
						e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 9, corr: "c1"})
					})
					wg.Go(func() { fc.end(ev) })
					wg.Wait()
					e.assertIdle(t)
					reportOnly(t, a)
				})
				t.Run("incoming/"+name, func(t *testing.T) {
					e := newEnv(t, time.Minute)
					fc, eps, st := e.incoming(t, 1)
					b, sub := eps[0], st[0].Control.SubsessionID
					if answered {
						e.answerIn(t, fc, b, st[0])
					}
					var wg sync.WaitGroup
					wg.Go(func() {
						switch {
						case webEnd == "session":
							e.h.SessionEnded(b)
						case answered:
							e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sub, seq: 9})
						default:
							e.send(b, wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: sub, seq: 9,
								corr: st[0].Control.CorrelationID, code: 486})
						}
					})
					wg.Go(func() { fc.end(ev) })
					wg.Wait()
					e.assertIdle(t)
					reportOnly(t, b)
				})
			}
		}
	}
}

// A client that accepts a REFER with 200 reports nothing: the REFER is
// accepted and its final NOTIFY says 200 at once. A second REFER while
// the web side has not answered the first gets 491.
func TestSIPReferAcceptedUnreported(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	b, sub := eps[0], st[0].Control.SubsessionID
	e.answerIn(t, fc, b, st[0])
	fc.pushRefer("sip:dave@sip.example")
	f := b.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	fc.pushRefer("sip:erin@sip.example")
	if o := fc.expectOp(t, "refer-reject"); o.code != 491 {
		t.Fatalf("second refer rejected with %d", o.code)
	}
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, sub: sub, seq: 2, corr: f.Control.CorrelationID, state: protocol.StateFinal, code: 200})
	fc.expectOp(t, "refer-accept")
	if o := fc.expectOp(t, "notify"); o.code != 200 {
		t.Fatalf("notify %d", o.code)
	}
	e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sub, seq: 3})
	fc.expectOp(t, "hangup")
}

// TestSIPOutgoingPrackOffer: a web PRACK's SDP is an offer, allowed once a
// reliable provisional answered the INVITE's offer: before, it is refused
// 491 and nothing goes to SIP; after, it goes in the PRACK and the
// answer in the PRACK's 200 comes back in the prack's response.
func TestSIPOutgoingPrackOffer(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	newOffer := strings.Replace(webOffer, "a=sendrecv", "a=sendonly", 1)
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, Reliable: true, RSeq: 1})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 2, corr: "c1", p: protocol.CallPayload{SDP: newOffer}})
	if f := a.expect(t, protocol.TypeError, protocol.ActionPrack); f.Header.ErrorCode != protocol.CodeRequestPending {
		t.Fatalf("PRACK offering across the INVITE's offer: error %d", f.Header.ErrorCode)
	}
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 3, corr: "c1"})
	if o := fc.expectOp(t, "prack"); o.sdp != "" {
		t.Fatalf("PRACK with %q", o.sdp)
	}
	a.expect(t, protocol.TypeResponse, protocol.ActionPrack)

	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 183, SDP: []byte(sipAnswer), Reliable: true, RSeq: 2})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionPrack, sub: "c1", seq: 4, corr: "c1", p: protocol.CallPayload{SDP: newOffer}})
	if o := fc.expectOp(t, "prack"); o.sdp != newOffer {
		t.Fatalf("PRACK with %q", o.sdp)
	}
	fc.reoffers <- reofferResult{answer: []byte(sipOffer)}
	if f := a.expect(t, protocol.TypeResponse, protocol.ActionPrack); decodeSDP(t, f) != sipOffer {
		t.Fatalf("prack's response with %q", decodeSDP(t, f))
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 5})
	fc.expectOp(t, "hangup")
}

// TestSIPResponseExt: what the to_web rules made of the SIP side's
// answers to the call's in-dialog requests rides on the web frames that
// answer the web side (the re-offer's 200 or error, the transfer's 202
// or error), and a dtmf frame's extension headers reach the INFO's
// header rules.
func TestSIPResponseExt(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	carrier := func(f *protocol.Frame, want string) {
		t.Helper()
		if x, ok := f.Header.ExtValue("x-carrier"); !ok || x.Value != want {
			t.Errorf("%s/%s extension headers %+v, want x-carrier: %s", f.Control.Type, f.Header.Action, f.Header.Ext, want)
		}
	}
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "reoffer")
	fc.reoffers <- reofferResult{answer: []byte(sipAnswer), headers: []sipgw.Header{{Name: "x-carrier", Value: "ok"}}}
	carrier(a.expect(t, protocol.TypeResponse, protocol.ActionStart), "ok")
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 4, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "reoffer")
	fc.reoffers <- reofferResult{err: &sipgw.ResponseError{Code: 488, Reason: "Not Acceptable Here", Headers: []sipgw.Header{{Name: "x-carrier", Value: "no"}}}}
	carrier(a.expect(t, protocol.TypeError, protocol.ActionStart), "no")

	fc.referHdr = []sipgw.Header{{Name: "x-carrier", Value: "refer"}}
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: "c1", seq: 5}.frame()
	f.Header.ReferTo = "sip:carol@sip.example"
	e.h.HandleFrame(a, f)
	fc.expectOp(t, "transfer")
	carrier(a.expect(t, protocol.TypeResponse, protocol.ActionTransfer), "refer")

	d := wf{typ: protocol.TypeMessage, act: protocol.ActionDTMF, sub: "c1", seq: 6, p: protocol.CallPayload{Digits: "1", Duration: 100}}.frame()
	d.Header.Ext = []protocol.Ext{{Name: "x-digit", Kind: protocol.ExtString, Value: "one"}}
	e.h.HandleFrame(a, d)
	if o := fc.expectOp(t, "dtmf"); len(o.ext) != 1 || o.ext[0] != (sipgw.Header{Name: "x-digit", Value: "one"}) {
		t.Errorf("dtmf's extension headers %v", o.ext)
	}
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	webShutdown(t, a)
}

// TestSIPReferAnswerExt: the extension headers of the web side's answers
// to a peer's REFER (the 202 or the refusal) and of its progress reports
// (the NOTIFYs) reach sipgw, for the header rules' {ext:NAME}.
func TestSIPReferAnswerExt(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	a := eps[0]
	e.answerIn(t, fc, a, st[0])
	sub := st[0].Control.SubsessionID
	tagged := func(w wf, v string) *protocol.Frame {
		f := w.frame()
		f.Header.Ext = []protocol.Ext{{Name: "x-tag", Kind: protocol.ExtString, Value: v}}
		return f
	}
	wantTag := func(o op, v string) {
		t.Helper()
		if len(o.ext) != 1 || o.ext[0] != (sipgw.Header{Name: "x-tag", Value: v}) {
			t.Errorf("%s's extension headers %v, want x-tag %s", o.name, o.ext, v)
		}
	}
	fc.pushRefer("sip:dave@sip.example")
	f := a.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	e.h.HandleFrame(a, tagged(wf{typ: protocol.TypeError, act: protocol.ActionTransfer, sub: sub, seq: 10, corr: f.Control.CorrelationID, code: 603}, "no"))
	wantTag(fc.expectOp(t, "refer-reject"), "no")
	fc.pushRefer("sip:erin@sip.example")
	f = a.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	e.h.HandleFrame(a, tagged(wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, sub: sub, seq: 11, corr: f.Control.CorrelationID, state: protocol.StateFinal, code: 202}, "yes"))
	wantTag(fc.expectOp(t, "refer-accept"), "yes")
	e.h.HandleFrame(a, tagged(wf{typ: protocol.TypeMessage, act: protocol.ActionTransfer, sub: sub, seq: 12, corr: f.Control.CorrelationID, code: 180}, "ringing"))
	wantTag(fc.expectOp(t, "notify"), "ringing")
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	webShutdown(t, a)
}
