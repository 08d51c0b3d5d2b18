package call

import (
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// webCall makes caller call callee's identity on sub and callee answer;
// it returns the callee's start.
func (e *env) webCall(t *testing.T, caller, callee *fakeEP, sub string, seq uint64) *protocol.Frame {
	t.Helper()
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: sub, seq: seq, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = callee.identity
	e.h.HandleFrame(caller, f)
	st := callee.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.send(callee, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 1,
		corr: st.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if a := caller.expect(t, protocol.TypeResponse, protocol.ActionStart); a.Header.ResponseCode != 200 {
		t.Fatalf("answer %d", a.Header.ResponseCode)
	}
	return st
}

// consult makes a call on "c2" to carol, who has the sessions c and c2:
// it rings both and c answers. It returns c's start.
func (e *env) consult(t *testing.T, a, c, c2 *fakeEP, seq uint64) *protocol.Frame {
	t.Helper()
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c2", seq: seq, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = "carol@web.example"
	e.h.HandleFrame(a, f)
	cStart := c.expect(t, protocol.TypeRequest, protocol.ActionStart)
	c2.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.send(c, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: cStart.Control.SubsessionID, seq: 1,
		corr: cStart.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	c2.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	return cStart
}

// attended sends A's attended transfer on sub, naming its consult call
// consult.
func (e *env) attended(a *fakeEP, sub, referTo, consult string, seq uint64) {
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: sub, seq: seq}.frame()
	f.Header.ReferTo, f.Header.Replaces = referTo, consult
	e.h.HandleFrame(a, f)
}

// replacingStart sends the transferee's new call carrying token.
func (e *env) replacingStart(b *fakeEP, sub, target, token string, seq uint64) {
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: sub, seq: seq, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target, f.Header.Replaces = target, token
	e.h.HandleFrame(b, f)
}

func hangUp(e *env, ep *fakeEP, sub string, seq uint64) {
	e.send(ep, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sub, seq: seq})
}

// TestAttendedTransferWeb: A (with B, and consulting C) transfers B to C,
// all on the web. B gets a token, not A's subsession; its new call rings
// only C's session that was in the consult call, marked as replacing it;
// a second session of C does not ring.
func TestAttendedTransferWeb(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b, c := e.ep("alice@web.example"), e.ep("bob@web.example"), e.ep("carol@web.example")
	c2 := e.ep("carol@web.example")
	bStart := e.webCall(t, a, b, "c1", 1)
	cStart := e.consult(t, a, c, c2, 2)

	e.attended(a, "c1", "carol@web.example", "c2", 3)
	tr := b.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	token := tr.Header.Replaces
	if tr.Header.ReferTo != "carol@web.example" || token == "" || token == "c2" {
		t.Fatalf("transfer to B: refer_to %q replaces %q", tr.Header.ReferTo, token)
	}
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, sub: bStart.Control.SubsessionID, seq: 2,
		corr: tr.Control.CorrelationID, state: protocol.StateFinal, code: 202})
	if r := a.expect(t, protocol.TypeResponse, protocol.ActionTransfer); r.Header.ResponseCode != 202 || r.Control.CorrelationID != "c3" {
		t.Fatalf("A's answer %d %q", r.Header.ResponseCode, r.Control.CorrelationID)
	}

	// Another session cannot use B's token.
	d := e.ep("dave@web.example")
	e.replacingStart(d, "c1", "carol@web.example", token, 1)
	if r := d.expect(t, protocol.TypeError, protocol.ActionStart); r.Header.ErrorCode != 481 {
		t.Fatalf("foreign token: %d", r.Header.ErrorCode)
	}

	e.replacingStart(b, "b9", "carol@web.example", token, 3)
	ns := c.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if ns.Header.Replaces != cStart.Control.SubsessionID || ns.Header.Initiator != "bob@web.example" {
		t.Fatalf("C's replacing start: replaces %q (want %q) initiator %q", ns.Header.Replaces, cStart.Control.SubsessionID, ns.Header.Initiator)
	}
	e.send(c, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: ns.Control.SubsessionID, seq: 2,
		corr: ns.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if r := b.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 {
		t.Fatalf("B's new call %d", r.Header.ResponseCode)
	}
	// C ends the replaced call; B reports the new call; A hangs up.
	hangUp(e, c, cStart.Control.SubsessionID, 3)
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionTransfer, sub: bStart.Control.SubsessionID, seq: 4,
		corr: tr.Control.CorrelationID, code: 200})
	if r := a.expect(t, protocol.TypeMessage, protocol.ActionTransfer); r.Header.ResponseCode != 200 {
		t.Fatalf("progress %d", r.Header.ResponseCode)
	}
	hangUp(e, a, "c1", 4)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)

	// The token was used once.
	e.replacingStart(b, "b10", "carol@web.example", token, 5)
	if r := b.expect(t, protocol.TypeError, protocol.ActionStart); r.Header.ErrorCode != 481 {
		t.Fatalf("reused token: %d", r.Header.ErrorCode)
	}
	hangUp(e, b, "b9", 6)
	c.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// TestAttendedTransferRefused: replaces naming no call of the session, or
// the call itself, or a consult call not yet answered, is refused; a
// forged token is refused.
func TestAttendedTransferRefused(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b, c := e.ep("alice@web.example"), e.ep("bob@web.example"), e.ep("carol@web.example")
	e.webCall(t, a, b, "c1", 1)
	cases := []struct {
		replaces string
		code     int
	}{
		{"nope", 481}, // no call of A's
		{"c1", 400},   // the call itself
	}
	seq := uint64(2)
	for _, tc := range cases {
		e.attended(a, "c1", "carol@web.example", tc.replaces, seq)
		seq++
		if r := a.expect(t, protocol.TypeError, protocol.ActionTransfer); r.Header.ErrorCode != tc.code {
			t.Fatalf("replaces %q: %d, want %d", tc.replaces, r.Header.ErrorCode, tc.code)
		}
	}
	// B's subsession names a call of B's session, not of A's.
	bSub := "s1"
	e.attended(a, "c1", "carol@web.example", bSub, seq)
	seq++
	if r := a.expect(t, protocol.TypeError, protocol.ActionTransfer); r.Header.ErrorCode != 481 {
		t.Fatalf("foreign subsession: %d", r.Header.ErrorCode)
	}
	// A consult call still ringing.
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c2", seq: seq, p: protocol.CallPayload{SDP: webOffer}}.frame()
	seq++
	f.Header.Target = "carol@web.example"
	e.h.HandleFrame(a, f)
	c.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.attended(a, "c1", "carol@web.example", "c2", seq)
	seq++
	if r := a.expect(t, protocol.TypeError, protocol.ActionTransfer); r.Header.ErrorCode != 491 {
		t.Fatalf("ringing consult: %d", r.Header.ErrorCode)
	}
	// A token B made up.
	e.replacingStart(b, "b2", "carol@web.example", "x;to-tag=1;from-tag=2", 2)
	if r := b.expect(t, protocol.TypeError, protocol.ActionStart); r.Header.ErrorCode != 481 {
		t.Fatalf("forged token: %d", r.Header.ErrorCode)
	}
	hangUp(e, a, "c2", seq)
	c.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	hangUp(e, a, "c1", seq+1)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// TestAttendedTransferSIPTransferee: web A transfers SIP B to web C. The
// REFER's Refer-To carries a dialog the gateway made for the consult
// call; B's INVITE with that Replaces rings C's consult session alone,
// marked as replacing it; an INVITE naming no dialog gets 481.
func TestAttendedTransferSIPTransferee(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fb := e.outgoing(t)
	e.answerOut(t, a, fb)
	c, c2 := e.ep("carol@web.example"), e.ep("carol@web.example")
	cStart := e.consult(t, a, c, c2, 3)

	e.attended(a, "c1", "carol@web.example", "c2", 4)
	o := fb.expectOp(t, "transfer")
	target, repStr, ok := strings.Cut(o.sdp, "?Replaces=")
	if !ok || target != "carol@web.example" {
		t.Fatalf("REFER to %q", o.sdp)
	}
	rep, err := sipgw.ParseReplaces(repStr)
	if err != nil {
		t.Fatal(err)
	}
	if r := a.expect(t, protocol.TypeResponse, protocol.ActionTransfer); r.Header.ResponseCode != 202 {
		t.Fatalf("REFER answer %d", r.Header.ResponseCode)
	}

	// An INVITE naming no dialog: 481 (RFC 3891 section 3); C hears nothing.
	bad := newFakeCall("carol@web.example", "sip:bob@sip.example")
	bad.offer = []byte(sipOffer)
	bad.replaces = &sipgw.Replaces{CallID: rep.CallID, ToTag: rep.ToTag, FromTag: "wrong"}
	e.h.incomingSIP(bad)
	if o := bad.expectOp(t, "reject"); o.code != 481 {
		t.Fatalf("unmatched Replaces: %d", o.code)
	}

	in := newFakeCall("carol@web.example", "sip:bob@sip.example")
	in.offer = []byte(sipOffer)
	in.replaces = &rep
	e.h.incomingSIP(in)
	ns := c.expect(t, protocol.TypeRequest, protocol.ActionStart)
	if ns.Header.Replaces != cStart.Control.SubsessionID {
		t.Fatalf("replacing start names %q, want %q", ns.Header.Replaces, cStart.Control.SubsessionID)
	}
	e.answerIn(t, in, c, ns)
	hangUp(e, c, cStart.Control.SubsessionID, 3)
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	fb.push(sipgw.Event{Kind: sipgw.EventTransferProgress, Code: 200, Reason: "OK", Final: true})
	a.expect(t, protocol.TypeMessage, protocol.ActionTransfer)
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	fb.expectOp(t, "hangup")
	hangUp(e, c, ns.Control.SubsessionID, 4)
	in.expectOp(t, "hangup")
}

// TestAttendedTransferSIPTarget: web A transfers web B to SIP C. B's
// new call is an INVITE whose Replaces names the gateway's dialog with C
// as C sees it (to-tag C's, from-tag ours).
func TestAttendedTransferSIPTarget(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
	bStart := e.webCall(t, a, b, "c1", 1)
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c2", seq: 2, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = "carol@sip.example"
	e.h.HandleFrame(a, f)
	fc := e.dialled(t)
	fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "carol-tag"})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)

	e.attended(a, "c1", "sip:carol@sip.example", "c2", 3)
	tr := b.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, sub: bStart.Control.SubsessionID, seq: 2,
		corr: tr.Control.CorrelationID, state: protocol.StateFinal, code: 202})
	a.expect(t, protocol.TypeResponse, protocol.ActionTransfer)
	e.replacingStart(b, "b2", "sip:carol@sip.example", tr.Header.Replaces, 3)
	nc := e.dialled(t)
	want := sipgw.Replaces{CallID: fc.Keys().CallID, ToTag: "carol-tag", FromTag: fc.Keys().LocalTag}
	if nc.dial.Replaces == nil || *nc.dial.Replaces != want || nc.dial.Target != "sip:carol@sip.example" {
		t.Fatalf("INVITE Replaces %+v to %q, want %+v", nc.dial.Replaces, nc.dial.Target, want)
	}
	// C ends its old dialog (RFC 3891); everything else hangs up.
	fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	hangUp(e, a, "c1", 4)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	hangUp(e, b, "b2", 4)
	nc.expectOp(t, "hangup")
}

// TestReplacesFromSIP: a SIP transferor's consult call to a web user is
// replaced by the transferee's INVITE with Replaces naming the gateway's
// dialog (to-tag ours, from-tag the transferor's).
func TestReplacesFromSIP(t *testing.T) {
	e := newEnv(t, time.Minute)
	fc, eps, st := e.incoming(t, 1)
	e.answerIn(t, fc, eps[0], st[0])
	k := fc.Keys()
	in := newFakeCall("bob@web.example", "sip:dave@sip.example")
	in.offer = []byte(sipOffer)
	in.replaces = &sipgw.Replaces{CallID: k.CallID, ToTag: k.LocalTag, FromTag: k.RemoteTag}
	e.h.incomingSIP(in)
	ns := eps[0].expect(t, protocol.TypeRequest, protocol.ActionStart)
	if ns.Header.Replaces != st[0].Control.SubsessionID {
		t.Fatalf("replacing start names %q, want %q", ns.Header.Replaces, st[0].Control.SubsessionID)
	}
	e.answerIn(t, in, eps[0], ns)
	hangUp(e, eps[0], st[0].Control.SubsessionID, 2)
	fc.expectOp(t, "hangup")
	hangUp(e, eps[0], ns.Control.SubsessionID, 3)
	in.expectOp(t, "hangup")
}

// TestReferWithReplacesFromSIP: a SIP transferor's REFER with Replaces
// reaches the web transferee as refer_to and a token. Its start rings
// the web user of this gateway whose SIP dialog the token names; naming
// a dialog elsewhere, it is an INVITE with that Replaces.
func TestReferWithReplacesFromSIP(t *testing.T) {
	e := newEnv(t, time.Minute)
	// The transferor's consult call: SIP to web carol, through us.
	carol := e.ep("carol@web.example")
	consult := newFakeCall("carol@web.example", "sip:alice@sip.example")
	consult.offer = []byte(sipOffer)
	e.h.incomingSIP(consult)
	cStart := carol.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.answerIn(t, consult, carol, cStart)
	// The call to be transferred: SIP alice to web bob.
	fc, eps, st := e.incoming(t, 1)
	b := eps[0]
	e.answerIn(t, fc, b, st[0])
	k := consult.Keys()
	ours := sipgw.Replaces{CallID: k.CallID, ToTag: k.LocalTag, FromTag: k.RemoteTag}
	elsewhere := sipgw.Replaces{CallID: "far@sip.example", ToTag: "t1", FromTag: "t2"}
	seq := uint64(2)
	for i, rep := range []sipgw.Replaces{ours, elsewhere} {
		fc.pushReferReplacing("sip:carol@web.example", &rep)
		tr := b.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
		if tr.Header.ReferTo != "sip:carol@web.example" || tr.Header.Replaces != rep.String() {
			t.Fatalf("transfer to B: refer_to %q replaces %q", tr.Header.ReferTo, tr.Header.Replaces)
		}
		e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionTransfer, sub: st[0].Control.SubsessionID, seq: seq,
			corr: tr.Control.CorrelationID, state: protocol.StateFinal, code: 202})
		seq++
		fc.expectOp(t, "refer-accept")
		sub := "b" + string(rune('1'+i))
		e.replacingStart(b, sub, "sip:carol@web.example", tr.Header.Replaces, seq)
		seq++
		if i == 0 {
			ns := carol.expect(t, protocol.TypeRequest, protocol.ActionStart)
			if ns.Header.Replaces != cStart.Control.SubsessionID {
				t.Fatalf("carol's replacing start names %q, want %q", ns.Header.Replaces, cStart.Control.SubsessionID)
			}
			hangUp(e, b, sub, seq)
			seq++
			carol.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
			e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionTransfer, sub: st[0].Control.SubsessionID, seq: seq,
				corr: tr.Control.CorrelationID, code: 487})
			seq++
			fc.expectOp(t, "notify")
			continue
		}
		nc := e.dialled(t)
		if nc.dial.Replaces == nil || *nc.dial.Replaces != elsewhere {
			t.Fatalf("INVITE Replaces %+v, want %+v", nc.dial.Replaces, elsewhere)
		}
		hangUp(e, b, sub, seq)
		seq++
		nc.expectOp(t, "hangup")
	}
	hangUp(e, b, st[0].Control.SubsessionID, seq)
	fc.expectOp(t, "hangup")
	hangUp(e, carol, cStart.Control.SubsessionID, 2)
	consult.expectOp(t, "hangup")
}

// TestAttendedTransferOneGrant: transfers naming the same consult call
// get the same token, and the handler keeps one grant for it, however
// many come (a client cannot grow the table).
func TestAttendedTransferOneGrant(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b, c := e.ep("alice@web.example"), e.ep("bob@web.example"), e.ep("carol@web.example")
	bStart := e.webCall(t, a, b, "c1", 1)
	e.webCall(t, a, c, "c2", 2)
	token := ""
	for i := range 3 {
		e.attended(a, "c1", "carol@web.example", "c2", uint64(3+i))
		tr := b.expect(t, protocol.TypeRequest, protocol.ActionTransfer)
		if token != "" && tr.Header.Replaces != token {
			t.Fatalf("transfer %d: token %q, want %q", i, tr.Header.Replaces, token)
		}
		token = tr.Header.Replaces
		e.send(b, wf{typ: protocol.TypeError, act: protocol.ActionTransfer, sub: bStart.Control.SubsessionID, seq: uint64(2 + i),
			corr: tr.Control.CorrelationID, code: 603})
		a.expect(t, protocol.TypeError, protocol.ActionTransfer)
	}
	e.h.mu.Lock()
	n := len(e.h.grants)
	e.h.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d grants, want 1", n)
	}
	hangUp(e, a, "c2", 6)
	c.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	hangUp(e, a, "c1", 7)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	e.h.mu.Lock()
	n = len(e.h.grants)
	e.h.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d grants left after the calls ended", n)
	}
}
