package call

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
	"github.com/jsonrtc/jsonrtc/templates"
)

func scoreTemplates(t *testing.T) func() *templates.Set {
	t.Helper()
	s, err := templates.New(templates.Config{Actions: []templates.ActionConfig{{
		Action: "x-score", Package: "call", Headers: templates.HeadersConfig{Optional: []string{"X-Game"}},
		SIP: &templates.SIPConfig{Method: "INFO", InfoPackage: "x-score"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return func() *templates.Set { return s }
}

// receivingTemplates declares an action for each method the peer's
// requests reach the web side by, and answer_timeout wait.
func receivingTemplates(t *testing.T, wait time.Duration) func() *templates.Set {
	t.Helper()
	s, err := templates.New(templates.Config{AnswerTimeout: wait, Actions: []templates.ActionConfig{
		{Action: "x-alert", Package: "call", SIP: &templates.SIPConfig{Method: "NOTIFY", Event: "x-alert", Receive: true}},
		{Action: "x-card", Package: "call", SIP: &templates.SIPConfig{Method: "MESSAGE", ContentType: "application/x-card+json", Receive: true}},
		{Action: "x-state", Package: "call", SIP: &templates.SIPConfig{Method: "UPDATE", ContentType: "application/x-state+json", Receive: true}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return func() *templates.Set { return s }
}

// TestSIPDeclaredReceived: the peer's NOTIFY, MESSAGE and UPDATE of a
// receiving action reach the web side as requests of that action, and
// the web side's answer is their response; one whose action a reload
// took away gets what an undeclared one would.
func TestSIPDeclaredReceived(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.h.far.tmpl = receivingTemplates(t, 0)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)
	seq := uint64(2)
	for _, tc := range []struct {
		method, mark string
		action       protocol.Action
		code         int
	}{
		{"NOTIFY", "x-alert", "x-alert", 200},
		{"MESSAGE", "application/x-card+json", "x-card", 202},
		{"UPDATE", "application/x-state+json", "x-state", 488},
	} {
		fi := fc.pushRequest(tc.method, tc.mark, `{"n":1}`)
		f := a.expect(t, protocol.TypeRequest, tc.action)
		if string(f.Payload) != `{"n":1}` || f.Control.SubsessionID != "c1" {
			t.Fatalf("%s to the web: %s", tc.method, f.Marshal())
		}
		seq++
		w := wf{typ: protocol.TypeResponse, act: tc.action, sub: "c1", seq: seq, corr: f.Control.CorrelationID, code: tc.code}
		if tc.code >= 300 {
			w.typ = protocol.TypeError
		}
		e.h.HandleFrame(a, w.frame())
		if ans := answerOf(t, fi); ans.Code != tc.code {
			t.Fatalf("%s answer %+v, want %d", tc.method, ans, tc.code)
		}
	}
	e.h.far.tmpl = func() *templates.Set { return nil }
	if ans := answerOf(t, fc.pushRequest("NOTIFY", "x-alert", `{}`)); ans.Code != 489 {
		t.Fatalf("undeclared NOTIFY answer %+v", ans)
	}
	if ans := answerOf(t, fc.pushRequest("MESSAGE", "application/x-card+json", `{}`)); ans.Code != 415 {
		t.Fatalf("undeclared MESSAGE answer %+v", ans)
	}
	seq++
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: seq})
	fc.expectOp(t, "hangup")
}

// TestSIPDeclaredAnswerTimeout: templates.answer_timeout bounds the web
// side's answer to the peer's request.
func TestSIPDeclaredAnswerTimeout(t *testing.T) {
	run := inBubble(func(t *testing.T) {
		e := newEnv(t, time.Minute)
		e.h.far.tmpl = receivingTemplates(t, 3*time.Second)
		a, fc := e.outgoing(t)
		e.answerOut(t, a, fc)
		fi := fc.pushRequest("NOTIFY", "x-alert", `{}`)
		a.expect(t, protocol.TypeRequest, "x-alert")
		timesOut(t, fi, 3*time.Second)
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3})
		fc.expectOp(t, "hangup")
	})
	run(t)
}

// timesOut checks, in a synctest bubble, that fi is answered 408 once
// wait passed and not before.
func timesOut(t *testing.T, fi *fakeInfo, wait time.Duration) {
	t.Helper()
	// The bubble's clock: no real wait.
	time.Sleep(wait - time.Second)
	synctest.Wait()
	if fi.n.Load() != 0 {
		t.Fatalf("answered before %v", wait)
	}
	time.Sleep(2 * time.Second)
	synctest.Wait()
	if ans := answerOf(t, fi); ans.Code != 408 {
		t.Fatalf("answer %+v", ans)
	}
}

func answerOf(t *testing.T, fi *fakeInfo) sipgw.Answer {
	t.Helper()
	select {
	case a := <-fi.answered:
		return a
	case <-time.After(waitFor):
		t.Fatal("the INFO got no answer")
		return sipgw.Answer{}
	}
}

// TestSIPDeclared: the web caller's declared request goes in the dialog
// and its answer comes back; the peer's INFO of the declared package
// reaches the web side as a request whose answer is the INFO's; a second
// answer, and one to nothing pending, change nothing.
func TestSIPDeclared(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.h.far.tmpl = scoreTemplates(t)
	a, fc := e.outgoing(t)
	e.answerOut(t, a, fc)

	got := make(chan sipgw.Answer, 1)
	e.h.Request(a, "c1", sipgw.Request{Method: "INFO", InfoPackage: "x-score", ContentType: "application/json", Body: []byte(`{"points":3}`)},
		func(ans sipgw.Answer, err error) {
			if err != nil {
				t.Error(err)
			}
			got <- ans
		})
	if o := fc.expectOp(t, "request"); o.info.Package != "x-score" || o.sdp != `{"points":3}` {
		t.Fatalf("request %+v", o)
	}
	if ans := <-got; ans.Code != 200 || string(ans.Body) != `{"rank":1}` {
		t.Fatalf("answer %+v", ans)
	}

	fi := fc.pushDeclared("x-score", `{"points":9}`, sipgw.Header{Name: "X-Game", Value: "go"}, sipgw.Header{Name: "Via", Value: "v"})
	f := a.expect(t, protocol.TypeRequest, "x-score")
	if game, _ := f.Header.ExtValue("X-Game"); string(f.Payload) != `{"points":9}` || game.Value != "go" || len(f.Header.Ext) != 1 || f.Control.SubsessionID != "c1" {
		t.Fatalf("request to the web: %s", f.Marshal())
	}
	resp := wf{typ: protocol.TypeResponse, act: "x-score", sub: "c1", seq: 3, corr: f.Control.CorrelationID, code: 200}.frame()
	resp.Payload = []byte(`{"ok":true}`)
	e.h.HandleFrame(a, resp)
	if ans := answerOf(t, fi); ans.Code != 200 || string(ans.Body) != `{"ok":true}` {
		t.Fatalf("INFO answer %+v", ans)
	}
	e.send(a, wf{typ: protocol.TypeError, act: "x-score", sub: "c1", seq: 4, corr: f.Control.CorrelationID, code: 486})
	if fi.n.Load() != 1 {
		t.Fatal("a second answer was sent")
	}

	// An INFO of a package that a reload took away since it came.
	e.h.far.tmpl = func() *templates.Set { return nil }
	gone := fc.pushDeclared("x-score", `{}`)
	if ans := answerOf(t, gone); ans.Code != 469 {
		t.Fatalf("undeclared INFO answer %+v", ans)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 5})
	fc.expectOp(t, "hangup")
}

// TestSIPDeclaredUnanswered: an INFO the web side does not answer gets
// 408 after templates.DefaultAnswerTimeout, within the peer's transaction.
func TestSIPDeclaredUnanswered(t *testing.T) {
	run := inBubble(func(t *testing.T) {
		e := newEnv(t, time.Minute)
		e.h.far.tmpl = scoreTemplates(t)
		a, fc := e.outgoing(t)
		e.answerOut(t, a, fc)
		fi := fc.pushDeclared("x-score", `{"points":1}`)
		a.expect(t, protocol.TypeRequest, "x-score")
		timesOut(t, fi, templates.DefaultAnswerTimeout)
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3})
		fc.expectOp(t, "hangup")
	})
	run(t)
}

// TestSIPDeclaredBeforeAnswer: a declared request before the call is
// answered fails with ErrCallState (405 to the client).
func TestSIPDeclaredBeforeAnswer(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, fc := e.outgoing(t)
	var err error
	e.h.Request(a, "c1", sipgw.Request{Method: "INFO"}, func(_ sipgw.Answer, e error) { err = e })
	if code, _ := sipgw.ErrorCode(err); code != 405 {
		t.Fatalf("err %v (%d)", err, code)
	}
	e.h.Request(a, "c9", sipgw.Request{Method: "INFO"}, func(_ sipgw.Answer, e error) { err = e })
	if code, _ := sipgw.ErrorCode(err); code != 481 {
		t.Fatalf("no such call: %v (%d)", err, code)
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 2})
	fc.expectOp(t, "hangup")
}

// relayedDeclared sends alice's request of x-score on her call c1 with
// Declared; its answer goes back to her session.
func relayedDeclared(e *env, a *fakeEP, act *templates.Action, seq uint64, wait time.Duration) {
	f := wf{typ: protocol.TypeRequest, act: "x-score", sub: "c1", seq: seq}.frame()
	f.Header.Ext = []protocol.Ext{{Name: "X-Game", Value: "go"}}
	f.Payload = []byte(`{"points":3}`)
	e.h.Declared(a, act, f, wait, func(out *protocol.Frame, o endpoint.Origin) { _, _ = endpoint.Relay(a, out, false, o) })
}

// TestRelayDeclared: in a call between web pages a declared request
// goes to the other page, and its answer back to the sender with the
// sender's correlation; before the answer it is refused 405; a second
// answer is dropped.
func TestRelayDeclared(t *testing.T) {
	e := newEnv(t, time.Minute)
	act := scoreTemplates(t)().Lookup(protocol.PackageCall, "x-score")
	a, b := e.ep("alice@web.example"), e.ep("bob@web.example")

	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = b.identity
	e.h.HandleFrame(a, f)
	bStart := b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	relayedDeclared(e, a, act, 2, time.Minute)
	if r := a.expect(t, protocol.TypeError, "x-score"); r.Header.ErrorCode != 405 {
		t.Fatalf("before the answer: %s", r.Marshal())
	}
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: bStart.Control.SubsessionID, seq: 1,
		corr: bStart.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	a.expect(t, protocol.TypeResponse, protocol.ActionStart)

	relayedDeclared(e, a, act, 3, time.Minute)
	r := b.expect(t, protocol.TypeRequest, "x-score")
	if game, _ := r.Header.ExtValue("X-Game"); string(r.Payload) != `{"points":3}` || game.Value != "go" ||
		r.Control.SubsessionID != bStart.Control.SubsessionID || r.Header.Initiator != a.identity || r.Header.Target != b.identity {
		t.Fatalf("request to bob: %s", r.Marshal())
	}
	resp := wf{typ: protocol.TypeResponse, act: "x-score", sub: r.Control.SubsessionID, seq: 2, corr: r.Control.CorrelationID,
		state: protocol.StateFinal, code: 200}.frame()
	resp.Payload = []byte(`{"rank":1}`)
	e.h.HandleFrame(b, resp)
	got := a.expect(t, protocol.TypeResponse, "x-score")
	if got.Header.ResponseCode != 200 || got.Control.CorrelationID != "c3" || got.Control.SubsessionID != "c1" || string(got.Payload) != `{"rank":1}` {
		t.Fatalf("answer to alice: %s", got.Marshal())
	}
	e.h.HandleFrame(b, resp)
	hangUp(e, a, "c1", 4)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	select {
	case f := <-a.frames: // Declared and HandleFrame send before they return
		t.Fatalf("after the answer: %s", f.Marshal())
	default:
	}
}

// TestRelayDeclaredUnanswered: a declared request the other page does
// not answer gets 408 once wait passed.
func TestRelayDeclaredUnanswered(t *testing.T) {
	run := inBubble(func(t *testing.T) {
		e := newEnv(t, time.Minute)
		act := scoreTemplates(t)().Lookup(protocol.PackageCall, "x-score")
		a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
		e.webCall(t, a, b, "c1", 1)
		relayedDeclared(e, a, act, 2, 3*time.Second)
		b.expect(t, protocol.TypeRequest, "x-score")
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if r := a.expect(t, protocol.TypeError, "x-score"); r.Header.ErrorCode != 408 || r.Control.CorrelationID != "c2" {
			t.Fatalf("answer %s", r.Marshal())
		}
		hangUp(e, a, "c1", 3)
		b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	})
	run(t)
}
