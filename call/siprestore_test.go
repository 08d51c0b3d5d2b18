package call

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// dialogFake is a fakeCall whose dialog can be recorded and released,
// as a *sipgw.Call's: its in-dialog requests of ours (Hangup's BYE) take
// the next CSeq, handed to the write-ahead function before they go.
type dialogFake struct {
	*fakeCall
	changed chan struct{}

	dmu   sync.Mutex
	app   json.RawMessage
	ahead func(sipgw.DialogState) error
	cseq  uint32
}

func newDialogFake(fc *fakeCall) *dialogFake {
	return &dialogFake{fakeCall: fc, changed: make(chan struct{}, 1), cseq: 1}
}

func (d *dialogFake) DialogState() (sipgw.DialogState, bool) {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	return sipgw.DialogState{Version: sipgw.DialogStateVersion, CallID: "cid-" + d.id, LocalCSeq: d.cseq, App: d.app}, true
}

func (d *dialogFake) DialogChanged() <-chan struct{} { return d.changed }

func (d *dialogFake) SetApp(app json.RawMessage) {
	d.dmu.Lock()
	d.app = app
	d.dmu.Unlock()
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

func (d *dialogFake) SetWriteAhead(f func(sipgw.DialogState) error) {
	d.dmu.Lock()
	d.ahead = f
	d.dmu.Unlock()
}

func (d *dialogFake) Release() (sipgw.DialogState, bool) {
	st, _ := d.DialogState()
	d.record(op{name: "release"})
	d.end(sipgw.Event{End: sipgw.EndReleased})
	return st, true
}

// Hangup is the BYE: written ahead with its CSeq, then sent.
func (d *dialogFake) Hangup(ctx context.Context, ext ...sipgw.Header) error {
	d.dmu.Lock()
	d.cseq++
	f := d.ahead
	d.dmu.Unlock()
	if f != nil {
		st, _ := d.DialogState()
		_ = f(st) // a BYE goes whatever the record (sipgw requestIn)
	}
	return d.fakeCall.Hangup(ctx, ext...)
}

// replicated is one call of Options.ReplicateSIP or WriteAheadSIP.
type replicated struct {
	sn    SIPSnapshot
	st    sipgw.DialogState
	ended bool
	ahead bool
}

// recordingEnv is newEnv whose handler records SIP calls, on the
// returned channel, and whose dials make dialogFakes.
func recordingEnv(t *testing.T) (*env, chan replicated) {
	e := newEnv(t, 0)
	rec := make(chan replicated, 64)
	e.h.opts.ReplicateSIP = func(sn SIPSnapshot, st sipgw.DialogState, ended bool) {
		rec <- replicated{sn: sn, st: st, ended: ended}
	}
	e.h.opts.WriteAheadSIP = func(sn SIPSnapshot, st sipgw.DialogState) error {
		rec <- replicated{sn: sn, st: st, ahead: true}
		return nil
	}
	dial := e.h.far.dial
	e.h.far.dial = func(ctx context.Context, o sipgw.DialOptions) (sipCall, error) {
		sc, err := dial(ctx, o)
		if err != nil {
			return nil, err
		}
		return newDialogFake(sc.(*fakeCall)), nil
	}
	return e, rec
}

func nextRecord(t *testing.T, rec chan replicated) replicated {
	t.Helper()
	select {
	case r := <-rec:
		return r
	case <-time.After(waitFor):
		t.Fatal("nothing recorded")
		return replicated{}
	}
}

// A confirmed outgoing SIP call is recorded: its web leg in the dialog's
// App, the BYE's CSeq written ahead of it, the end.
func TestSIPCallRecorded(t *testing.T) {
	e, rec := recordingEnv(t)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	r := nextRecord(t, rec)
	var sn SIPSnapshot
	if err := json.Unmarshal(r.st.App, &sn); err != nil || r.ended || r.ahead {
		t.Fatalf("first record %+v (%v)", r, err)
	}
	want := SIPSnapshot{Out: true, Target: "bob@sip.example", Web: LegSnapshot{Session: a.id, Identity: a.identity, Sub: "c1", StartCorr: "c1"}}
	if !reflect.DeepEqual(sn, want) || !reflect.DeepEqual(r.sn, want) {
		t.Fatalf("recorded %+v, in the dialog %+v, want %+v", r.sn, sn, want)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3})
	if r := nextRecord(t, rec); !r.ahead || r.st.LocalCSeq != 2 {
		t.Fatalf("the BYE's write-ahead: %+v", r)
	}
	fc.expectOp(t, "hangup")
	if r := nextRecord(t, rec); !r.ended || r.sn.Web.Sub != "c1" {
		t.Fatalf("the end: %+v", r)
	}
}

// An unanswered call is not recorded when its SIP side cannot say what
// its INVITE was (no EarlyState: TestSIPCallRingingRecorded has one).
func TestSIPCallRingingNotRecorded(t *testing.T) {
	e, rec := recordingEnv(t)
	a, fc := e.outgoing(t)
	fc.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 180})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)
	fc.end(sipgw.Event{End: sipgw.EndRejected, Code: 486})
	a.expect(t, protocol.TypeError, protocol.ActionStart)
	e.assertIdle(t)
	select {
	case r := <-rec:
		t.Fatalf("recorded %+v", r)
	default:
	}
}

// adoptingEnv is recordingEnv whose SIP side adopts dialogs: the
// adopted calls on the returned channel, or err.
func adoptingEnv(t *testing.T, err error) (*env, chan replicated, chan *dialogFake) {
	e, rec := recordingEnv(t)
	adopted := make(chan *dialogFake, 4)
	e.h.far.adopt = func(ctx context.Context, st sipgw.DialogState, o *sipgw.AdoptOptions) (sipCall, error) {
		if err != nil {
			return nil, err
		}
		d := newDialogFake(newFakeCall("bob@web.example", "sip:carol@sip.example"))
		d.cseq = st.LocalCSeq
		d.ahead = o.WriteAhead
		adopted <- d
		return d, nil
	}
	return e, rec, adopted
}

// incomingState is the record of an answered incoming call whose web leg
// is ep's subsession sub.
func incomingState(ep *fakeEP, sub string) sipgw.DialogState {
	app, _ := json.Marshal(SIPSnapshot{Target: ep.identity, Remote: "carol@sip.example",
		Web: LegSnapshot{Session: ep.id, Identity: ep.identity, Sub: sub, StartCorr: "s1"}})
	return sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uas", CallID: "cid-x", LocalCSeq: 4, App: app}
}

// A recorded incoming call restored on another handler goes on there, on
// the same subsession: SIP's DTMF and BYE reach the web leg, which is
// recorded again; the web leg's hang-up is a BYE written ahead with the
// dialog's next CSeq.
func TestRestoreSIPGoesOn(t *testing.T) {
	t.Run("sip hangs up", func(t *testing.T) {
		e, rec, adopted := adoptingEnv(t, nil)
		b := e.ep("bob@web.example")
		if err := e.h.RestoreSIP(context.Background(), incomingState(b, "s7"), b); err != nil {
			t.Fatal(err)
		}
		d := <-adopted
		if r := nextRecord(t, rec); r.sn.Web.Sub != "s7" || r.sn.Remote != "carol@sip.example" {
			t.Fatalf("the restored call's record %+v", r)
		}
		d.push(sipgw.Event{Kind: sipgw.EventInfo, Digit: "5", Duration: 100})
		if f := b.expect(t, protocol.TypeMessage, protocol.ActionDTMF); f.Control.SubsessionID != "s7" || f.Header.Initiator != "carol@sip.example" {
			t.Fatalf("dtmf %s", f.Marshal())
		}
		d.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		if f := b.expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Control.SubsessionID != "s7" {
			t.Fatalf("shutdown %s", f.Marshal())
		}
		if r := nextRecord(t, rec); !r.ended {
			t.Fatalf("the end: %+v", r)
		}
	})
	t.Run("web hangs up", func(t *testing.T) {
		e, rec, adopted := adoptingEnv(t, nil)
		b := e.ep("bob@web.example")
		if err := e.h.RestoreSIP(context.Background(), incomingState(b, "s7"), b); err != nil {
			t.Fatal(err)
		}
		d := <-adopted
		nextRecord(t, rec)
		if err := e.h.RestoreSIP(context.Background(), incomingState(b, "s7"), b); !errors.Is(err, ErrLegTaken) {
			t.Fatalf("a second restore of the leg: %v", err)
		}
		e.send(b, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "s7", seq: 2})
		if r := nextRecord(t, rec); !r.ahead || r.st.LocalCSeq != 5 {
			t.Fatalf("the BYE's write-ahead: %+v", r)
		}
		d.expectOp(t, "hangup")
	})
}

// The peer's INFO and BYE that came between the dialog's adoption and
// the call's (SIPp sends them as soon as the target refresh is answered:
// docs/cluster.md, the INFO lost after an adoption) wait in the SIP
// call's events until the restored call reads them: the web leg gets
// the DTMF, then the shutdown, and the record goes.
func TestRestoreSIPEventsBeforeInstall(t *testing.T) {
	e, rec := recordingEnv(t)
	e.h.far.adopt = func(ctx context.Context, st sipgw.DialogState, o *sipgw.AdoptOptions) (sipCall, error) {
		d := newDialogFake(newFakeCall("bob@web.example", "sip:carol@sip.example"))
		d.cseq, d.ahead = st.LocalCSeq, o.WriteAhead
		d.push(sipgw.Event{Kind: sipgw.EventInfo, Digit: "7", Duration: 160})
		d.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		return d, nil
	}
	b := e.ep("bob@web.example")
	if err := e.h.RestoreSIP(context.Background(), incomingState(b, "s7"), b); err != nil {
		t.Fatal(err)
	}
	if f := b.expect(t, protocol.TypeMessage, protocol.ActionDTMF); f.Control.SubsessionID != "s7" {
		t.Fatalf("dtmf %s", f.Marshal())
	}
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	for r := nextRecord(t, rec); !r.ended; r = nextRecord(t, rec) {
	}
	e.assertIdle(t)
}

// A dialog the peer does not take back (the target refresh refused)
// ends the web leg with a reason, and leaves nothing behind.
func TestRestoreSIPRefused(t *testing.T) {
	e, rec, _ := adoptingEnv(t, errors.New("sipgw: target refresh of an adopted dialog: 481"))
	b := e.ep("bob@web.example")
	if err := e.h.RestoreSIP(context.Background(), incomingState(b, "s7"), b); err == nil {
		t.Fatal("restored")
	}
	f := b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	if f.Control.SubsessionID != "s7" || f.Header.Reason != adoptFailedReason {
		t.Fatalf("shutdown %s", f.Marshal())
	}
	if e.h.Active() != 0 || e.h.Has(b, "s7") {
		t.Fatal("a call left")
	}
	select {
	case r := <-rec:
		t.Fatalf("recorded %+v", r)
	default:
	}
}

// A drain hands a confirmed SIP call over: the dialog is released
// without a word to either side, its last state returned for the
// record, and no end recorded (the record is the adopter's now). A
// ringing call stays.
func TestReleaseSIP(t *testing.T) {
	e, rec := recordingEnv(t)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	nextRecord(t, rec)
	rel := e.h.ReleaseSIP(a)
	if len(rel) != 1 || rel[0].Call.Web.Sub != "c1" || rel[0].Dialog.CallID == "" {
		t.Fatalf("released %+v", rel)
	}
	fc.expectOp(t, "release")
	e.assertIdle(t)
	select {
	case f := <-a.frames:
		t.Fatalf("the web leg heard %s", f.Marshal())
	case r := <-rec:
		t.Fatalf("recorded %+v", r)
	default:
	}

	b, fc2 := e.outgoingTo(t, "carol@sip.example")
	if rel := e.h.ReleaseSIP(b); len(rel) != 0 {
		t.Fatalf("a ringing call released: %+v", rel)
	}
	fc2.end(sipgw.Event{End: sipgw.EndRejected, Code: 486})
	b.expect(t, protocol.TypeError, protocol.ActionStart)
}

// An outgoing call restored elsewhere keeps its route's header rules:
// the adopter binds them again, as at the dial, for the target (before,
// an adopted call's messages went without them).
func TestRestoreSIPKeepsHeaderRules(t *testing.T) {
	e, rec := recordingEnv(t)
	x := &routing.Transform{}
	var got *routing.Transform
	e.h.far.adopt = func(ctx context.Context, st sipgw.DialogState, o *sipgw.AdoptOptions) (sipCall, error) {
		got = o.Transform
		return newDialogFake(newFakeCall("alice@web.example", "sip:bob@sip.example")), nil
	}
	a := routedEP{e.ep("alice@web.example"), routing.Decision{Target: "bob@sip.example", Transform: x}}
	app, _ := json.Marshal(SIPSnapshot{Out: true, Target: "bob@sip.example", Web: LegSnapshot{Session: a.id, Identity: a.identity, Sub: "c1"}})
	if err := e.h.RestoreSIP(context.Background(), sipgw.DialogState{Version: sipgw.DialogStateVersion, Role: "uac", App: app}, a); err != nil {
		t.Fatal(err)
	}
	if got != x {
		t.Fatalf("adopted with header rules %p, want the route's %p", got, x)
	}
	nextRecord(t, rec)
	e.send(a.fakeEP, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 2})
	nextRecord(t, rec) // the BYE's write-ahead
}

// An adopted SIP call counts against its web leg's session on its new
// host, as a restored web call does (Restore), until it ends; a second
// restore of the leg takes nothing; a call handed over at a drain stops
// counting on the node that released it.
func TestRestoreSIPTakesQuota(t *testing.T) {
	e, rec, adopted := adoptingEnv(t, nil)
	b := e.ep("bob@web.example")
	if err := e.h.RestoreSIP(context.Background(), incomingState(b, "s7"), b); err != nil {
		t.Fatal(err)
	}
	d := <-adopted
	nextRecord(t, rec)
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("the adopted call holds %d of its session's call quota, want 1", n)
	}
	if err := e.h.RestoreSIP(context.Background(), incomingState(b, "s7"), b); !errors.Is(err, ErrLegTaken) {
		t.Fatalf("a second restore of the leg: %v", err)
	}
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("after a second restore the session holds %d calls, want 1", n)
	}
	d.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	e.assertIdle(t)
	if n := b.calls.Load(); n != 0 {
		t.Fatalf("after the end the session holds %d calls, want 0", n)
	}

	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	if n := a.calls.Load(); n != 1 {
		t.Fatalf("the answered call holds %d calls, want 1", n)
	}
	e.h.ReleaseSIP(a)
	e.assertIdle(t)
	if n := a.calls.Load(); n != 0 {
		t.Fatalf("after the release the session holds %d calls here, want 0", n)
	}
}

// EndSIP ends a recorded call whose web user is gone: the dialog is
// ended once, with the 480 cause, and the handler keeps nothing of it.
func TestEndSIP(t *testing.T) {
	e, rec, _ := adoptingEnv(t, nil)
	type ended struct {
		callID, reason string
		code           int
	}
	got := make(chan ended, 2)
	e.h.far.end = func(ctx context.Context, st sipgw.DialogState, code int, reason string, o *sipgw.AdoptOptions) error {
		if o != nil && o.Transform != nil {
			t.Error("an incoming call's end given header rules: its user agent binds them")
		}
		got <- ended{st.CallID, reason, code}
		return nil
	}
	b := e.ep("bob@web.example")
	if err := e.h.EndSIP(context.Background(), incomingState(b, "s7"), nil); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != (ended{"cid-x", orphanReason, 480}) {
		t.Fatalf("ended %+v", g)
	}
	select {
	case g := <-got:
		t.Fatalf("ended again %+v", g)
	case r := <-rec:
		t.Fatalf("recorded %+v", r)
	default:
	}
	e.assertIdle(t)
	e.h.far.end = nil
	if err := e.h.EndSIP(context.Background(), incomingState(b, "s8"), nil); err != ErrNoAdopt {
		t.Fatalf("EndSIP without a SIP side that ends dialogs: %v", err)
	}
}

// A request the SIP leg refused before it left, its state not recorded
// (the write-ahead failed: sipgw.ErrNotRecorded), is a 503 with that
// reason to the web side, a re-offer's and a DTMF's, and the call goes
// on. Before, a re-offer's error said "Service Unavailable" and a
// DTMF's nothing.
func TestSIPRequestNotRecorded(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	notRecorded := fmt.Errorf("%w: store down", sipgw.ErrNotRecorded)
	e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: webOffer}})
	fc.expectOp(t, "reoffer")
	fc.reoffers <- reofferResult{err: notRecorded}
	want := sipgw.ErrNotRecorded.Reason
	if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 503 || f.Header.Reason != want || f.Control.CorrelationID != "c3" {
		t.Fatalf("re-offer's error %d %q on %q, want 503 %q", f.Header.ErrorCode, f.Header.Reason, f.Control.CorrelationID, want)
	}
	fc.mu.Lock()
	fc.dtmfErr = notRecorded
	fc.mu.Unlock()
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionDTMF, sub: "c1", seq: 4, p: protocol.CallPayload{Digits: "1", Duration: 100}})
	fc.expectOp(t, "dtmf")
	if f := a.expect(t, protocol.TypeError, protocol.ActionDTMF); f.Header.ErrorCode != 503 || f.Header.Reason != want || f.Control.CorrelationID != "c4" {
		t.Fatalf("DTMF's error %d %q on %q, want 503 %q", f.Header.ErrorCode, f.Header.Reason, f.Control.CorrelationID, want)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 5})
	fc.expectOp(t, "hangup")
}

// pendingOf is the web leg's requests under way in a record's App.
func pendingOf(t *testing.T, r replicated) []PendingRequest {
	t.Helper()
	var sn SIPSnapshot
	if err := json.Unmarshal(r.st.App, &sn); err != nil {
		t.Fatalf("record %+v: %v", r, err)
	}
	return sn.Pending
}

// nextPending waits for a record whose App's pending requests are want.
func nextPending(t *testing.T, rec chan replicated, want []PendingRequest) {
	t.Helper()
	for {
		r := nextRecord(t, rec)
		if r.ended {
			t.Fatalf("the call ended waiting for pending %v", want)
		}
		if reflect.DeepEqual(pendingOf(t, r), want) {
			return
		}
	}
}

// The web leg's re-offer and transfer under way toward SIP are in the
// call's record until answered; a node that adopts a record holding
// them fails them to the web leg, a 503 each with its correlation, and
// records the call without them. Before, they were in no record, and
// the web side waited for its request timeout.
func TestSIPPendingRequestsFailedAtAdoption(t *testing.T) {
	t.Run("recorded", func(t *testing.T) {
		e, rec := recordingEnv(t)
		a, fc := e.outgoing(t)
		e.answerOut(t, a, fc)
		nextRecord(t, rec)
		e.send(a, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: webOffer}})
		fc.expectOp(t, "reoffer")
		nextPending(t, rec, []PendingRequest{{Action: protocol.ActionStart, Corr: "c3"}})
		fc.reoffers <- reofferResult{answer: []byte(sipAnswer)}
		a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		nextPending(t, rec, nil)
		f := wf{typ: protocol.TypeRequest, act: protocol.ActionTransfer, sub: "c1", seq: 4}.frame()
		f.Header.ReferTo = "sip:carol@sip.example"
		fc.referGo = make(chan struct{})
		e.h.HandleFrame(a, f)
		fc.expectOp(t, "transfer")
		// Under way until the REFER's 202.
		nextPending(t, rec, []PendingRequest{{Action: protocol.ActionTransfer, Corr: "c4"}})
		close(fc.referGo)
		a.expect(t, protocol.TypeResponse, protocol.ActionTransfer)
		nextPending(t, rec, nil)
		fc.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	})
	t.Run("adopted", func(t *testing.T) {
		e, rec, adopted := adoptingEnv(t, nil)
		b := e.ep("bob@web.example")
		st := incomingState(b, "s7")
		var sn SIPSnapshot
		_ = json.Unmarshal(st.App, &sn)
		sn.Pending = []PendingRequest{{Action: protocol.ActionStart, Corr: "c3"}, {Action: protocol.ActionTransfer, Corr: "c4"}}
		st.App, _ = json.Marshal(sn)
		if err := e.h.RestoreSIP(context.Background(), st, b); err != nil {
			t.Fatal(err)
		}
		for _, p := range sn.Pending {
			f := b.expect(t, protocol.TypeError, p.Action)
			if f.Control.CorrelationID != p.Corr || f.Control.SubsessionID != "s7" || f.Header.ErrorCode != 503 || f.Header.Reason != pendingReasons[p.Action] {
				t.Fatalf("the pending %s's failure %s", p.Action, f.Marshal())
			}
		}
		if r := nextRecord(t, rec); len(pendingOf(t, r)) != 0 {
			t.Fatalf("the adopted call's record still has pending %v", pendingOf(t, r))
		}
		(<-adopted).end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200})
		b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	})
}
