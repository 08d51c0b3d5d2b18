package call

import (
	"context"
	"encoding/json"
	"reflect"
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

// An incoming SIP call ringing one web session is recorded while it
// rings, under that callee's leg, and the record goes at its end; one
// ringing two sessions is not (a record per fork would have each finder
// end the call).
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
	t.Run("one session", func(t *testing.T) {
		e, rec, eps, starts, ef := ring(t, 1)
		r := nextRecord(t, rec)
		var sn SIPSnapshot
		if err := json.Unmarshal(r.st.App, &sn); err != nil || r.ended || r.st.Invite == nil {
			t.Fatalf("first record %+v (%v)", r, err)
		}
		sub := starts[0].Control.SubsessionID
		if sn.Out || sn.Web.Session != eps[0].id || sn.Web.Sub != sub || sn.Web.StartCorr != starts[0].Control.CorrelationID || !reflect.DeepEqual(r.sn, sn) {
			t.Fatalf("recorded %+v, in the state %+v", r.sn, sn)
		}
		ef.end(sipgw.Event{End: sipgw.EndCancelled, Code: 487})
		eps[0].expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		if r := nextRecord(t, rec); !r.ended || r.sn.Web.Sub != sub {
			t.Fatalf("the end: %+v", r)
		}
		e.assertIdle(t)
	})
	t.Run("two sessions", func(t *testing.T) {
		e, rec, eps, _, ef := ring(t, 2)
		ef.end(sipgw.Event{End: sipgw.EndCancelled, Code: 487})
		for _, ep := range eps {
			ep.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		}
		e.assertIdle(t)
		select {
		case r := <-rec:
			t.Fatalf("recorded %+v", r)
		default:
		}
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
	if f.Control.SubsessionID != "s7" || f.Header.Reason != ringLostIn {
		t.Fatalf("the callee got %+v", f)
	}
	e.assertIdle(t)
}
