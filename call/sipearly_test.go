package call

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// earlyFake is a dialogFake whose INVITE is under way until answered:
// EarlyState until then, DialogState after, as a *sipgw.Call's.
type earlyFake struct {
	*dialogFake
	answered atomic.Bool
}

func (d *earlyFake) DialogState() (sipgw.DialogState, bool) {
	if !d.answered.Load() {
		return sipgw.DialogState{}, false
	}
	return d.dialogFake.DialogState()
}

func (d *earlyFake) EarlyState() (sipgw.DialogState, bool) {
	if d.answered.Load() {
		return sipgw.DialogState{}, false
	}
	d.dmu.Lock()
	defer d.dmu.Unlock()
	return sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", CallID: "cid-" + d.id, App: d.app,
		Invite: &sipgw.InviteState{Via: "SIP/2.0/UDP n1;branch=z9hG4bK1", CSeq: 1}}, true
}

// An outgoing SIP call is recorded from its dial, its INVITE under way
// (EarlyState) with the caller's leg, so that another node can cancel it
// if this one dies; its end deletes the record.
func TestSIPCallRingingRecorded(t *testing.T) {
	e, rec := recordingEnv(t)
	dial := e.h.far.dial
	e.h.far.dial = func(ctx context.Context, o sipgw.DialOptions) (sipCall, error) {
		sc, err := dial(ctx, o)
		if err != nil {
			return nil, err
		}
		return &earlyFake{dialogFake: sc.(*dialogFake)}, nil
	}
	a, fc := e.outgoing(t)
	r := nextRecord(t, rec)
	var sn SIPSnapshot
	if err := json.Unmarshal(r.st.App, &sn); err != nil || r.ended || r.ahead || r.st.Invite == nil {
		t.Fatalf("first record %+v (%v)", r, err)
	}
	want := SIPSnapshot{Out: true, Target: "bob@sip.example", Web: LegSnapshot{Session: a.id, Identity: a.identity, Sub: "c1", StartCorr: "c1"}}
	if !reflect.DeepEqual(sn, want) || !reflect.DeepEqual(r.sn, want) {
		t.Fatalf("recorded %+v, in the state %+v, want %+v", r.sn, sn, want)
	}
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 180})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	fc.end(sipgw.Event{End: sipgw.EndRejected, Code: 486})
	a.expect(t, protocol.TypeError, protocol.ActionStart)
	if r := nextRecord(t, rec); !r.ended || r.sn.Web.Sub != "c1" {
		t.Fatalf("the end: %+v", r)
	}
	e.assertIdle(t)
}

// EndEarlySIP of a ringing outgoing call's record cancels its INVITE with
// the cause, and the web caller hears it as its start's error.
func TestEndEarlySIPOut(t *testing.T) {
	e, rec, _ := adoptingEnv(t, nil)
	type ended struct {
		invite bool
		reason string
		code   int
	}
	got := make(chan ended, 2)
	e.h.far.end = func(ctx context.Context, st sipgw.DialogState, code int, reason string, _ *sipgw.AdoptOptions) error {
		got <- ended{st.Invite != nil, reason, code}
		return nil
	}
	a := e.ep("alice@web.example")
	app, _ := json.Marshal(SIPSnapshot{Out: true, Target: "bob@sip.example", Web: LegSnapshot{Session: a.id, Identity: a.identity, Sub: "c3", StartCorr: "s3"}})
	st := sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", CallID: "cid-y", App: app,
		Invite: &sipgw.InviteState{Via: "SIP/2.0/UDP n1;branch=z9hG4bK1", CSeq: 1}}
	if err := e.h.EndEarlySIP(context.Background(), st, a); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != (ended{true, ringLostReason, 503}) {
		t.Fatalf("ended %+v", g)
	}
	f := a.expect(t, protocol.TypeError, protocol.ActionStart)
	if f.Control.SubsessionID != "c3" || f.Control.CorrelationID != "s3" || f.Header.ErrorCode != 503 || f.Header.Reason != ringLostReason {
		t.Fatalf("the caller got %+v", f)
	}
	select {
	case r := <-rec:
		t.Fatalf("recorded %+v", r)
	default:
	}
	e.assertIdle(t)
	st.Invite = nil
	if err := e.h.EndEarlySIP(context.Background(), st, a); err == nil {
		t.Fatal("EndEarlySIP of a confirmed dialog's state")
	}
}

// An incoming SIP call is recorded while it rings, under the key of a
// callee's leg; when it rings two sessions the record holds the other as
// a fork (its key points at the record). The record follows the ringing
// legs: a fork that declines leaves it, the leg it was kept under moves
// it (the old one ended, then written under the next ringing leg's), and
// the answer of a fork moves it to that fork's key, the confirmed
// dialog's. Before, a call ringing two sessions had no record at all:
// its node's death left the phone ringing.
func TestSIPCallIncomingRingingRecorded(t *testing.T) {
	ring := func(t *testing.T, n int) (*env, chan replicated, []*fakeEP, []*protocol.Frame, *earlyFake) {
		e, rec := recordingEnv(t)
		var eps []*fakeEP
		for range n {
			eps = append(eps, e.ep("bob@web.example"))
		}
		fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
		fc.offer = []byte(sipOffer)
		ef := &earlyFake{dialogFake: newDialogFake(fc)}
		e.h.incomingSIP(ef)
		var starts []*protocol.Frame
		for _, ep := range eps {
			starts = append(starts, ep.expect(t, protocol.TypeRequest, protocol.ActionStart))
		}
		return e, rec, eps, starts, ef
	}
	legOf := func(ep *fakeEP, start *protocol.Frame) LegSnapshot {
		return LegSnapshot{Session: ep.id, Identity: ep.identity, Sub: start.Control.SubsessionID, StartCorr: start.Control.CorrelationID}
	}
	// record checks r, the next record, against its web leg and forks,
	// ringing (its INVITE under way) or not.
	record := func(t *testing.T, r replicated, ended, ringing bool, web LegSnapshot, forks ...LegSnapshot) {
		t.Helper()
		var sn SIPSnapshot
		if !ended {
			if err := json.Unmarshal(r.st.App, &sn); err != nil || !reflect.DeepEqual(r.sn, sn) {
				t.Fatalf("recorded %+v, in the state %+v (%v)", r.sn, sn, err)
			}
		}
		if r.ended != ended || r.ahead || !ended && (r.st.Invite != nil) != ringing || r.sn.Out || r.sn.Web != web || !slices.Equal(r.sn.Forks, forks) {
			t.Fatalf("recorded %+v (ended %v, INVITE %v), want ended %v, ringing %v, web %+v, forks %+v", r.sn, r.ended, r.st.Invite, ended, ringing, web, forks)
		}
	}
	for n := 1; n <= 2; n++ {
		t.Run(strconv.Itoa(n)+" sessions, cancelled", func(t *testing.T) {
			e, rec, eps, starts, ef := ring(t, n)
			var legs []LegSnapshot
			for i, ep := range eps {
				legs = append(legs, legOf(ep, starts[i]))
			}
			record(t, nextRecord(t, rec), false, true, legs[0], legs[1:]...)
			ef.end(sipgw.Event{End: sipgw.EndCancelled, Code: 487})
			for _, ep := range eps {
				ep.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
			}
			record(t, nextRecord(t, rec), true, false, legs[0], legs[1:]...)
			e.assertIdle(t)
		})
	}
	t.Run("three sessions, declines", func(t *testing.T) {
		e, rec, eps, starts, ef := ring(t, 3)
		w0, w1, w2 := legOf(eps[0], starts[0]), legOf(eps[1], starts[1]), legOf(eps[2], starts[2])
		record(t, nextRecord(t, rec), false, true, w0, w1, w2)
		decline := func(i int) {
			e.send(eps[i], wf{typ: protocol.TypeError, act: protocol.ActionStart, sub: starts[i].Control.SubsessionID, seq: 1,
				corr: starts[i].Control.CorrelationID, code: 486})
		}
		decline(1) // a fork: the record stays under w0's key
		record(t, nextRecord(t, rec), false, true, w0, w2)
		decline(0) // the leg it is kept under: it moves to w2's
		record(t, nextRecord(t, rec), true, false, w0, w2)
		record(t, nextRecord(t, rec), false, true, w2)
		ef.end(sipgw.Event{End: sipgw.EndCancelled, Code: 487})
		eps[2].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		record(t, nextRecord(t, rec), true, false, w2)
		e.assertIdle(t)
	})
	t.Run("two sessions, the fork answers", func(t *testing.T) {
		e, rec, eps, starts, ef := ring(t, 2)
		w0, w1 := legOf(eps[0], starts[0]), legOf(eps[1], starts[1])
		record(t, nextRecord(t, rec), false, true, w0, w1)
		e.send(eps[1], wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: w1.Sub, seq: 1,
			corr: w1.StartCorr, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
		ef.expectOp(t, "answer")
		eps[0].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		// As sipgw: the ACK confirms the dialog (a change, its App still
		// the ringing call's), then the event.
		ef.answered.Store(true)
		ef.SetApp(ef.app)
		ef.push(sipgw.Event{Kind: sipgw.EventConfirmed})
		eps[1].expect(t, protocol.TypeMessage, protocol.ActionComplete)
		record(t, nextRecord(t, rec), true, false, w0, w1)
		record(t, nextRecord(t, rec), false, false, w1)
		ef.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		eps[1].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		r := nextRecord(t, rec)
		if !r.ended {
			// The confirmation's signal read once recordDialog's App was
			// in: the same record, written again.
			record(t, r, false, false, w1)
			r = nextRecord(t, rec)
		}
		record(t, r, true, false, w1)
		e.assertIdle(t)
	})
}

// EndEarlySIP of a ringing incoming call's record refuses its INVITE
// (480, saying why), and the web callee gets a shutdown.
func TestEndEarlySIPIn(t *testing.T) {
	e, _, _ := adoptingEnv(t, nil)
	got := make(chan int, 1)
	e.h.far.end = func(ctx context.Context, st sipgw.DialogState, code int, reason string, _ *sipgw.AdoptOptions) error {
		got <- code
		return nil
	}
	b := e.ep("bob@web.example")
	st := incomingState(b, "s7")
	st.Invite = &sipgw.InviteState{Vias: []string{"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"}, CSeq: 1}
	if err := e.h.EndEarlySIP(context.Background(), st, b); err != nil {
		t.Fatal(err)
	}
	if c := <-got; c != 480 {
		t.Fatalf("final response %d, want 480", c)
	}
	f := b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	if f.Control.SubsessionID != "s7" || f.Header.Reason != RingLostIn {
		t.Fatalf("the callee got %+v", f)
	}
	e.assertIdle(t)
}

// EndEarlySIP of the record of an incoming call ringing several web
// sessions refuses its INVITE once (480) and shuts each fork down whose
// session is still there; a fork whose session is gone is told nothing.
func TestEndEarlySIPInForks(t *testing.T) {
	inBubble(func(t *testing.T) {
		e, _, _ := adoptingEnv(t, nil)
		got := make(chan int, 2)
		e.h.far.end = func(ctx context.Context, st sipgw.DialogState, code int, reason string, _ *sipgw.AdoptOptions) error {
			got <- code
			return nil
		}
		b1, b2, b3 := e.ep("bob@web.example"), e.ep("bob@web.example"), e.ep("bob@web.example")
		leg := func(ep *fakeEP, sub string) LegSnapshot {
			return LegSnapshot{Session: ep.id, Identity: ep.identity, Sub: sub, StartCorr: "s" + sub}
		}
		app, _ := json.Marshal(SIPSnapshot{Target: "bob@web.example", Remote: "carol@sip.example",
			Web: leg(b1, "g1"), Forks: []LegSnapshot{leg(b2, "g2"), leg(b3, "g3")}})
		st := sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uas", CallID: "cid-f", App: app,
			Invite: &sipgw.InviteState{Vias: []string{"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"}, CSeq: 1}}
		if err := e.h.EndEarlySIP(context.Background(), st, b2, b1); err != nil { // b3's session gone
			t.Fatal(err)
		}
		if c := <-got; c != 480 {
			t.Fatalf("final response %d, want 480", c)
		}
		for ep, sub := range map[*fakeEP]string{b1: "g1", b2: "g2"} {
			f := ep.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
			if f.Control.SubsessionID != sub || f.Header.Reason != RingLostIn || f.Header.Initiator != "carol@sip.example" {
				t.Fatalf("the callee of %s got %s", sub, f.Marshal())
			}
			ep.quiet(t)
		}
		b3.quiet(t)
		select {
		case c := <-got:
			t.Fatalf("a second final response %d", c)
		default:
		}
		e.assertIdle(t)
	})(t)
}
