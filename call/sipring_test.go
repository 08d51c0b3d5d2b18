package call

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// ringingEnv is recordingEnv whose handler goes on with ringing calls,
// each adopted one (an earlyFake) handed on the returned channel.
func ringingEnv(t *testing.T) (*env, chan replicated, chan *earlyFake) {
	e, rec := recordingEnv(t)
	adopted := make(chan *earlyFake, 4)
	e.h.far.ringing = func(st sipgw.DialogState) (sipCall, error) {
		fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
		fc.offer = []byte(st.RemoteSDP)
		ef := &earlyFake{dialogFake: newDialogFake(fc)}
		adopted <- ef
		return ef, nil
	}
	return e, rec, adopted
}

// ringingRecord is the record of an incoming call ringing the web legs
// of eps, subsessions g1, g2...; until is its RingUntil.
func ringingRecord(until time.Time, eps ...*fakeEP) sipgw.DialogState {
	var legs []LegSnapshot
	for i, ep := range eps {
		sub := "g" + string(rune('1'+i))
		legs = append(legs, LegSnapshot{Session: ep.id, Identity: ep.identity, Sub: sub, StartCorr: "s" + sub})
	}
	app, _ := json.Marshal(SIPSnapshot{Target: "bob@web.example", Remote: "carol@sip.example", Web: legs[0], Forks: legs[1:], RingUntil: until})
	return sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uas", CallID: "cid-r", App: app, RemoteSDP: sipOffer,
		Invite: &sipgw.InviteState{Vias: []string{"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"}, CSeq: 1}}
}

// A ringing incoming call whose node died rings on on the node that
// takes its record (issue 15): a fork's answer is the SIP answer, the
// other leg hears the call is off, and the call goes on as answered
// here; the record is written again, by this node, from the adoption.
// Before, the call was ended: 480 to the caller, a shutdown to each leg.
func TestRestoreRingingSIPAnswered(t *testing.T) { inBubble(restoreRingingAnswered)(t) }

func restoreRingingAnswered(t *testing.T) {
	e, rec, adopted := ringingEnv(t)
	b1, b2 := e.ep("bob@web.example"), e.ep("bob@web.example")
	if err := e.h.RestoreRingingSIP(ringingRecord(time.Now().Add(time.Minute), b1, b2), b1, b2); err != nil {
		t.Fatal(err)
	}
	ef := <-adopted
	if r := nextRecord(t, rec); r.ended || r.sn.Web.Sub != "g1" || len(r.sn.Forks) != 1 || r.sn.Forks[0].Sub != "g2" || r.sn.RingUntil.IsZero() {
		t.Fatalf("the adopted ringing call's record %+v", r)
	}
	b1.quiet(t)
	e.send(b2, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "g2", seq: 1,
		corr: "sg2", state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if o := ef.expectOp(t, "answer"); o.sdp != webOffer {
		t.Fatalf("answered SIP with %q", o.sdp)
	}
	if f := b1.expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Control.SubsessionID != "g1" {
		t.Fatalf("the other leg got %s", f.Marshal())
	}
	ef.answered.Store(true)
	ef.SetApp(ef.app)
	ef.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	if f := b2.expect(t, protocol.TypeMessage, protocol.ActionComplete); f.Control.SubsessionID != "g2" {
		t.Fatalf("the answering leg got %s", f.Marshal())
	}
	// The ringing record ends, the answered call's is written under
	// the answering leg's key.
	for r := nextRecord(t, rec); r.ended || r.sn.Web.Sub != "g2"; r = nextRecord(t, rec) {
	}
	ef.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b2.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	for r := nextRecord(t, rec); !r.ended || r.sn.Web.Sub != "g2"; r = nextRecord(t, rec) {
	}
	e.assertIdle(t)
}

// The adopted ringing call's decline is the caller's final response,
// and its ring timer is the dead node's: past it, the caller gets 480
// at once and the legs a shutdown.
func TestRestoreRingingSIPDeclinedOrLate(t *testing.T) {
	t.Run("declined", inBubble(func(t *testing.T) {
		e, _, adopted := ringingEnv(t)
		b := e.ep("bob@web.example")
		if err := e.h.RestoreRingingSIP(ringingRecord(time.Now().Add(time.Minute), b), b); err != nil {
			t.Fatal(err)
		}
		ef := <-adopted
		e.send(b, wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: "g1", seq: 1, corr: "sg1", code: 603})
		if o := ef.expectOp(t, "reject"); o.code != 603 {
			t.Fatalf("rejected %d, want the decline's 603", o.code)
		}
		e.assertIdle(t)
	}))
	t.Run("ring timeout passed", inBubble(func(t *testing.T) {
		e, _, adopted := ringingEnv(t)
		b1, b2 := e.ep("bob@web.example"), e.ep("bob@web.example")
		// b2's session is gone: b1 alone rings.
		if err := e.h.RestoreRingingSIP(ringingRecord(time.Now().Add(-time.Second), b2, b1), b1); err != nil {
			t.Fatal(err)
		}
		ef := <-adopted
		if o := ef.expectOp(t, "reject"); o.code != protocol.CodeTemporarilyUnavail {
			t.Fatalf("rejected %d, want 480", o.code)
		}
		if f := b1.expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Control.SubsessionID != "g2" {
			t.Fatalf("the leg got %s", f.Marshal())
		}
		b2.quiet(t)
		e.assertIdle(t)
	}))
}

// A ringing call's adoption that waits (its proxy dialled over TCP or
// TLS: a blackholed one for opTimeout) holds none of its legs'
// sessions: a frame of the session's other work is handled meanwhile,
// and the call's own frames wait and are handled once it is adopted, in
// the order they came (b1's answer, then b2's: b1's is the SIP answer).
// Before, the adoption held the call's lock, which the first of them
// waited for, and the session's next frame behind it.
func TestRestoreRingingSIPAdoptionHoldsNoSession(t *testing.T) {
	e, _, _ := ringingEnv(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	adopted := make(chan *earlyFake, 1)
	e.h.far.ringing = func(st sipgw.DialogState) (sipCall, error) {
		close(entered)
		<-release
		fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
		fc.offer = []byte(st.RemoteSDP)
		ef := &earlyFake{dialogFake: newDialogFake(fc)}
		adopted <- ef
		return ef, nil
	}
	b1, b2 := e.ep("bob@web.example"), e.ep("bob@web.example")
	restored := make(chan error, 1)
	go func() { restored <- e.h.RestoreRingingSIP(ringingRecord(time.Now().Add(time.Minute), b1, b2), b1, b2) }()
	<-entered
	b2Answer := strings.Replace(webOffer, "U1", "U2", 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		e.send(b1, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "g1", seq: 1,
			corr: "sg1", state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
		e.send(b2, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "g2", seq: 1,
			corr: "sg2", state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: b2Answer}})
		e.send(b1, wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: "other", seq: 2})
	}()
	if f := b1.expect(t, protocol.TypeError, protocol.ActionTransfer); f.Header.ErrorCode != protocol.CodeNoSuchCall {
		t.Fatalf("the session's other frame got %d", f.Header.ErrorCode)
	}
	<-sent
	unblock()
	if err := <-restored; err != nil {
		t.Fatal(err)
	}
	ef := <-adopted
	if o := ef.expectOp(t, "answer"); o.sdp != webOffer {
		t.Fatalf("answered SIP with %q, want b1's answer, the first", o.sdp)
	}
	if f := b2.expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Control.SubsessionID != "g2" {
		t.Fatalf("the other leg got %s", f.Marshal())
	}
	ef.answered.Store(true)
	ef.push(sipgw.Event{Kind: sipgw.EventConfirmed})
	b1.expect(t, protocol.TypeMessage, protocol.ActionComplete)
	ef.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b1.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	e.assertIdle(t)
}

// The adopted ringing call's 200 that no ACK followed ends at sipgw's
// 64*T1 with EndTimeout (sipgw TestAdoptRingingAnsweredNeverAcked):
// the answering leg hears a shutdown, and the call is gone.
func TestRestoreRingingSIPAnsweredNeverAcked(t *testing.T) {
	inBubble(func(t *testing.T) {
		e, _, adopted := ringingEnv(t)
		b := e.ep("bob@web.example")
		if err := e.h.RestoreRingingSIP(ringingRecord(time.Now().Add(time.Minute), b), b); err != nil {
			t.Fatal(err)
		}
		ef := <-adopted
		e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "g1", seq: 1,
			corr: "sg1", state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
		ef.expectOp(t, "answer")
		ef.end(sipgw.Event{End: sipgw.EndTimeout, Code: 408})
		b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		e.assertIdle(t)
	})(t)
}
