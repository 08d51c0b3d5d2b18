package call

import (
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// routedEP is a session whose requests a fixed routing decision routes
// (the gateway's sessions implement endpoint.Router with the rules).
type routedEP struct {
	*fakeEP
	d routing.Decision
}

func (r routedEP) Route(kind routing.Kind, target string, _ []protocol.Ext) routing.Decision {
	if kind != routing.Call {
		panic("routed a call as " + kind.String())
	}
	return r.d
}

func (e *env) routedStart(target string, d routing.Decision) routedEP {
	a := routedEP{e.ep("alice@web.example"), d}
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = target
	e.h.HandleFrame(a, f)
	return a
}

func TestRoutedCallRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, time.Minute)
		a := e.routedStart("bob@sip.example", routing.Decision{Action: routing.ActionReject, Code: 403, Reason: "guests call sales only"})
		f := a.expect(t, protocol.TypeError, protocol.ActionStart)
		if f.Header.ErrorCode != 403 || f.Header.Reason != "guests call sales only" {
			t.Fatalf("error %d %q", f.Header.ErrorCode, f.Header.Reason)
		}
		a.quiet(t)
	})
}

func TestRoutedCallToTrunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, time.Minute)
		e.ep("bob@web.example") // a web identity: the built-in profile would relay
		snd := routing.Sender{From: "sip:alice@ims.example", AssertedIdentity: "sip:alice@ims.example"}
		hs := []routing.Header{{Name: "X-Account", Value: "42"}}
		a := e.routedStart("bob@web.example", routing.Decision{Action: routing.ActionSIP, Trunk: "pstn",
			Target: "sip:+3312@pstn.example", Sender: snd, Headers: hs})
		fc := e.dialled(t)
		if fc.dial.Target != "sip:+3312@pstn.example" || !reflect.DeepEqual(fc.dial.Route, sipgw.Route{Trunk: "pstn", Sender: snd, Headers: hs}) {
			t.Fatalf("dial %+v", fc.dial)
		}
		fc.end(sipgw.Event{End: sipgw.EndRejected, Code: 486})
		webFailed(486)(t, a.fakeEP)
	})
}

func TestRoutedCallToWebWithRewrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, time.Minute)
		bob := e.ep("bob@web.example")
		// sip:bob@sip.example would go to SIP; the rule relays it to the
		// web identity it rewrote it to.
		a := e.routedStart("sip:bob@sip.example", routing.Decision{Action: routing.ActionWeb, Target: "bob@web.example"})
		if f := bob.expect(t, protocol.TypeRequest, protocol.ActionStart); f.Header.Initiator != "alice@web.example" {
			t.Fatalf("bob rung by %q", f.Header.Initiator)
		}
		select {
		case fc := <-e.dials:
			t.Fatalf("dialled %+v", fc.dial)
		default:
		}
		e.h.SessionEnded(a)
		bob.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	})
}

// The extension headers sipgw's to_web rules made of SIP messages reach
// the web side: of an incoming INVITE on the start, of a provisional and
// of the 2xx on the responses, of the peer's re-INVITE on its start, of
// its BYE on the shutdown.
func TestSIPHeadersToWeb(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, time.Minute)
		bob := e.ep("bob@web.example")
		fc := newFakeCall("bob@web.example", "sip:carol@sip.example")
		fc.offer = []byte(sipOffer)
		fc.headers = []sipgw.Header{{Name: "x-caller-id", Value: "<sip:+15551234@sip.example>"}}
		e.h.incomingSIP(fc)
		start := bob.expect(t, protocol.TypeRequest, protocol.ActionStart)
		if x, ok := start.Header.ExtValue("x-caller-id"); !ok || x.Value != "<sip:+15551234@sip.example>" || len(start.Header.Ext) != 1 {
			t.Fatalf("incoming start ext %+v", start.Header.Ext)
		}
		e.h.SessionEnded(bob)
		fc.expectOp(t, "reject")

		a, out := e.outgoing(t)
		out.push(sipgw.Event{Kind: sipgw.EventProgress, Code: 180, Headers: []sipgw.Header{{Name: "x-carrier", Value: "c1"}}})
		if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); len(f.Header.Ext) != 1 || f.Header.Ext[0].Value != "c1" {
			t.Fatalf("ringing ext %+v", f.Header.Ext)
		}
		out.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), Headers: []sipgw.Header{{Name: "x-carrier", Value: "c2"}}})
		if f := a.expect(t, protocol.TypeResponse, protocol.ActionStart); f.Header.ResponseCode != 200 || len(f.Header.Ext) != 1 || f.Header.Ext[0].Name != "x-carrier" || f.Header.Ext[0].Value != "c2" {
			t.Fatalf("answer %s", f.Marshal())
		}
		e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionComplete, sub: "c1", seq: 2, corr: "c1"})
		out.expectOp(t, "ack")
		out.end(sipgw.Event{End: sipgw.EndRemoteBye, Code: 200, Headers: []sipgw.Header{{Name: "x-reason", Value: "Q.850;cause=16"}}})
		if f := a.expect(t, protocol.TypeMessage, protocol.ActionShutdown); len(f.Header.Ext) != 1 || f.Header.Ext[0].Name != "x-reason" || f.Header.Ext[0].Value != "Q.850;cause=16" {
			t.Fatalf("shutdown %s", f.Marshal())
		}
	})
}

// The web side's frames hand their extension headers to the SIP side's
// header rules ({ext:NAME}): the re-offer's to its re-INVITE, the end's
// to its BYE.
func TestFrameExtToSIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, time.Minute)
		a, out := e.outgoing(t)
		e.answerOut(t, a, out)
		f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 3, p: protocol.CallPayload{SDP: webOffer}}.frame()
		f.Header.Ext = []protocol.Ext{{Name: "x-plan", Kind: protocol.ExtString, Value: "gold"}}
		e.h.HandleFrame(a, f)
		if o := out.expectOp(t, "reoffer"); len(o.ext) != 1 || o.ext[0] != (sipgw.Header{Name: "x-plan", Value: "gold"}) {
			t.Fatalf("re-offer ext %+v", o.ext)
		}
		out.reoffers <- reofferResult{answer: []byte(sipAnswer)}
		a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		end := wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 4}.frame()
		end.Header.Ext = []protocol.Ext{{Name: "x-why", Kind: protocol.ExtString, Value: "done"}}
		e.h.HandleFrame(a, end)
		if o := out.expectOp(t, "hangup"); len(o.ext) != 1 || o.ext[0] != (sipgw.Header{Name: "x-why", Value: "done"}) {
			t.Fatalf("hangup ext %+v", o.ext)
		}
	})
}
