package messaging

import (
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// routedEP is a session whose messages a fixed routing decision routes.
type routedEP struct {
	*fakeEP
	d routing.Decision
}

func (r routedEP) Route(kind routing.Kind, target string, _ []protocol.Ext) routing.Decision {
	if kind != routing.Message {
		panic("routed a message as " + kind.String())
	}
	return r.d
}

func TestRoutedMessages(t *testing.T) {
	const body = `{"content_type":"text/plain","body":"hi"}`
	t.Run("reject", func(t *testing.T) {
		up := &fakeUpstream{routes: true}
		h, d := newHandler(t, Options{Upstream: up})
		a := routedEP{d.add("a", "alice@x"), routing.Decision{Action: routing.ActionReject, Code: 404, Reason: "no such number"}}
		h.HandleFrame(a, sendFrame(2, "+999", body))
		wantReport(t, a.only(t), protocol.TypeError, 2, "+999", 404, "no such number")
		if len(up.sent) != 0 {
			t.Fatalf("upstream got %+v", up.sent)
		}
	})
	t.Run("trunk, though the target is on the web", func(t *testing.T) {
		up := &fakeUpstream{routes: false}
		h, d := newHandler(t, Options{Upstream: up})
		d.add("b", "bob@x")
		dec := routing.Decision{Action: routing.ActionSIP, Trunk: "pstn", Target: "sip:+3312@pstn",
			Sender: routing.Sender{AssertedIdentity: "sip:alice@ims"}}
		a := routedEP{d.add("a", "alice@x"), dec}
		h.HandleFrame(a, sendFrame(2, "bob@x", body))
		if len(up.sent) != 1 || up.sent[0].To != "sip:+3312@pstn" || up.sent[0].Route.Trunk != "pstn" ||
			up.sent[0].Route.Sender != dec.Sender {
			t.Fatalf("upstream got %+v", up.sent)
		}
		up.reports[0](200, "OK", nil)
		wantReport(t, a.only(t), protocol.TypeResponse, 2, "bob@x", 200, "OK")
		idle(t, h)
	})
	t.Run("trunk without SIP side", func(t *testing.T) {
		h, d := newHandler(t, Options{})
		a := routedEP{d.add("a", "alice@x"), routing.Decision{Action: routing.ActionSIP, Trunk: "pstn", Target: "+1"}}
		h.HandleFrame(a, sendFrame(2, "+1", body))
		if f := a.only(t); f.Header.ErrorCode != protocol.CodeServiceUnavailable {
			t.Fatalf("error %d", f.Header.ErrorCode)
		}
	})
	t.Run("web, never upstream", func(t *testing.T) {
		up := &fakeUpstream{routes: true}
		h, d := newHandler(t, Options{Upstream: up})
		a := routedEP{d.add("a", "alice@x"), routing.Decision{Action: routing.ActionWeb, Target: "carol@x"}}
		h.HandleFrame(a, sendFrame(2, "sip:carol@x", body))
		wantReport(t, a.only(t), protocol.TypeError, 2, "sip:carol@x", 404, "Not Found")
		if len(up.sent) != 0 {
			t.Fatalf("upstream got %+v", up.sent)
		}
	})
}

// Extension headers given to Deliver (SIP headers named by
// routing.to_web) are on the frame each session gets, and those of the
// session's answer go to the answer function (for the header rules of
// the SIP response).
func TestDeliverExt(t *testing.T) {
	h, d := newHandler(t, Options{})
	b := d.add("b", "bob@x")
	got := make(chan []protocol.Ext, 1)
	h.Deliver("sip:carol@sip.example", "sip:bob@x", protocol.MessagePayload{ContentType: "text/plain", Body: "hi"},
		func(_ int, _ string, ext []protocol.Ext) { got <- ext }, protocol.Ext{Name: "x-carrier", Kind: protocol.ExtString, Value: "c9"})
	f := b.only(t)
	if x, ok := f.Header.ExtValue("x-carrier"); !ok || x.Value != "c9" {
		t.Fatalf("frame %s", f.Marshal())
	}
	a := answerFrame(f, 200, "")
	a.Header.Ext = []protocol.Ext{{Name: "x-mood", Kind: protocol.ExtString, Value: "glad"}}
	h.HandleFrame(b, a)
	if ext := <-got; len(ext) != 1 || ext[0].Name != "x-mood" || ext[0].Value != "glad" {
		t.Errorf("answer's extension headers %v", ext)
	}
	idle(t, h)
}
