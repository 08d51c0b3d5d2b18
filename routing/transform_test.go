package routing

import (
	"reflect"
	"testing"
)

// TestTransformToSIP: a table per rule kind (rename, constant, sender,
// application, regex capture, drop, Request-URI parameter) and method:
// each rule applies to the methods and the side (requests, responses)
// it names, and to every one when it names none.
func TestTransformToSIP(t *testing.T) {
	r := mustRouter(t, trunks+`
headers:
  - {name: rename, header: X-Account, value: "{ext:x-account}", methods: [BYE, re-INVITE, INFO]}
  - {name: constant, header: X-Gateway, value: jsonrtc}
  - {name: sender, header: X-Caller, value: "{identity}", methods: [MESSAGE, SUBSCRIBE, PUBLISH], on: requests}
  - {name: app, header: X-App, value: "{application}", methods: [INVITE], on: responses}
  - {name: capture, to: {regex: '^\+44(\d{2})'}, header: X-Area, value: "{1}", methods: [UPDATE, REFER, NOTIFY]}
  - {name: drop, header: X-Debug, drop: true, methods: [BYE]}
  - {name: param, param: cic, value: "0288", methods: [reinvite], on: requests}
`)
	x := r.Bind(Request{Application: "web", Identity: "alice@example.com", Target: "+442079460000"})
	ext := map[string]string{"x-account": "42"}
	gw := Header{Name: "X-Gateway", Value: "jsonrtc"}
	cases := []struct {
		m        Method
		response bool
		want     []Header
	}{
		{Invite, false, []Header{gw}},
		{Invite, true, []Header{gw, {Name: "X-App", Value: "web"}}},
		{ReInvite, false, []Header{{Name: "X-Account", Value: "42"}, gw, {Name: "cic", Value: "0288", Param: true}}},
		{ReInvite, true, []Header{{Name: "X-Account", Value: "42"}, gw}},
		{Update, false, []Header{gw, {Name: "X-Area", Value: "20"}}},
		{Bye, false, []Header{{Name: "X-Account", Value: "42"}, gw, {Name: "X-Debug", Drop: true}}},
		{Bye, true, []Header{{Name: "X-Account", Value: "42"}, gw, {Name: "X-Debug", Drop: true}}},
		{MessageMethod, false, []Header{gw, {Name: "X-Caller", Value: "alice@example.com"}}},
		{MessageMethod, true, []Header{gw}},
		{SubscribeMethod, false, []Header{gw, {Name: "X-Caller", Value: "alice@example.com"}}},
		{Notify, true, []Header{gw, {Name: "X-Area", Value: "20"}}},
		{PublishMethod, false, []Header{gw, {Name: "X-Caller", Value: "alice@example.com"}}},
		{Refer, false, []Header{gw, {Name: "X-Area", Value: "20"}}},
		{Info, false, []Header{{Name: "X-Account", Value: "42"}, gw}},
	}
	for _, c := range cases {
		if got := x.ToSIP(c.m, c.response, ext); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s response=%v: %v, want %v", c.m, c.response, got, c.want)
		}
	}
	// Without the frame's extension header the rename sets nothing.
	if got := x.ToSIP(Bye, false, nil); !reflect.DeepEqual(got, []Header{gw, {Name: "X-Debug", Drop: true}}) {
		t.Errorf("BYE without ext: %v", got)
	}
	// The initial request's headers are the decision's, by its kind.
	d := r.Decide(Request{Kind: Message, Identity: "alice@example.com", Target: "bob@example.com"})
	if !reflect.DeepEqual(d.Headers, []Header{gw, {Name: "X-Caller", Value: "alice@example.com"}}) || d.Transform == nil {
		t.Errorf("message decision: %v, transform %v", d.Headers, d.Transform)
	}
	var none *Transform
	if none.ToSIP(Bye, false, ext) != nil || none.ToWeb(Bye, false, nil) != nil {
		t.Error("a nil Transform transforms")
	}
}

// TestTransformToWeb: each to_web rule reads the methods and the side it
// names; a header the message lacks gives nothing.
func TestTransformToWeb(t *testing.T) {
	r := mustRouter(t, `
to_web:
  - {header: X-Carrier, ext: x-carrier}
  - {header: P-Asserted-Identity, ext: x-caller-id, methods: [INVITE]}
  - {header: Reason, ext: x-reason, methods: [BYE], on: requests}
  - {header: X-Quality, ext: x-quality, methods: [NOTIFY, re-INVITE, UPDATE, INFO, REFER]}
  - {header: X-Receipt, ext: x-receipt, methods: [MESSAGE, SUBSCRIBE, PUBLISH], on: responses}
`)
	x := r.Bind(Request{Identity: "alice@example.com", Target: "sip:bob@example.com"})
	msg := map[string]string{"x-carrier": "acme", "p-asserted-identity": "<sip:+4420@example.com>",
		"reason": `Q.850;cause=16`, "x-quality": "good", "x-receipt": "r1"}
	get := func(name string) (string, bool) { v, ok := msg[name]; return v, ok }
	carrier := Header{Name: "x-carrier", Value: "acme"}
	cases := []struct {
		m        Method
		response bool
		want     []Header
	}{
		{Invite, false, []Header{carrier, {Name: "x-caller-id", Value: "<sip:+4420@example.com>"}}},
		{Invite, true, []Header{carrier, {Name: "x-caller-id", Value: "<sip:+4420@example.com>"}}},
		{ReInvite, false, []Header{carrier, {Name: "x-quality", Value: "good"}}},
		{Bye, false, []Header{carrier, {Name: "x-reason", Value: "Q.850;cause=16"}}},
		{Bye, true, []Header{carrier}},
		{Notify, false, []Header{carrier, {Name: "x-quality", Value: "good"}}},
		{MessageMethod, false, []Header{carrier}},
		{MessageMethod, true, []Header{carrier, {Name: "x-receipt", Value: "r1"}}},
		{SubscribeMethod, true, []Header{carrier, {Name: "x-receipt", Value: "r1"}}},
		{PublishMethod, true, []Header{carrier, {Name: "x-receipt", Value: "r1"}}},
		{Info, false, []Header{carrier, {Name: "x-quality", Value: "good"}}},
		{Refer, false, []Header{carrier, {Name: "x-quality", Value: "good"}}},
		{Update, true, []Header{carrier, {Name: "x-quality", Value: "good"}}},
	}
	for _, c := range cases {
		if got := x.ToWeb(c.m, c.response, get); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s response=%v: %v, want %v", c.m, c.response, got, c.want)
		}
	}
	if got := x.ToWeb(Bye, false, func(string) (string, bool) { return "", false }); got != nil {
		t.Errorf("a message without the headers gave %v", got)
	}
}

// TestTransformKeepsItsConfiguration: a Transform made before a reload
// keeps the rules it was made with (a call in flight), while the new
// router's apply to what is decided next.
func TestTransformKeepsItsConfiguration(t *testing.T) {
	old := mustRouter(t, trunks+"headers: [{header: X-Plan, value: old}]\nto_web: [{header: X-A, ext: x-a}]\n")
	x := old.Bind(Request{Identity: "alice", Target: "+1555"})
	next := mustRouter(t, trunks+"headers: [{header: X-Plan, value: new}]\nto_web: [{header: X-B, ext: x-b}]\n")
	if got := x.ToSIP(Bye, false, nil); len(got) != 1 || got[0].Value != "old" {
		t.Errorf("in flight: %v", got)
	}
	if got := next.Decide(Request{Identity: "alice", Target: "+1555"}).Transform.ToSIP(Bye, false, nil); len(got) != 1 || got[0].Value != "new" {
		t.Errorf("next: %v", got)
	}
	get := func(n string) (string, bool) { return n, true }
	if got := x.ToWeb(Bye, false, get); len(got) != 1 || got[0].Name != "x-a" {
		t.Errorf("in flight to_web: %v", got)
	}
}

// REGISTER and PUBLISH follow the rules that name them alone; a web
// decision is the outbound proxy's (built-in) for them.
func TestRegisterPublishKinds(t *testing.T) {
	r := mustRouter(t, trunks+`
rules:
  - {name: all, trunk: a}
  - {name: reg, for: [register], trunk: b}
  - {name: pub, for: [publish], web: true}
`)
	for _, c := range []struct {
		kind   Kind
		action Action
		rule   string
	}{
		{Call, ActionSIP, "all"}, {Register, ActionSIP, "reg"}, {Publish, ActionBuiltin, "pub"},
	} {
		d := r.Decide(Request{Kind: c.kind, Identity: "alice@example.com", Target: "alice@example.com"})
		if d.Action != c.action || d.Rule != c.rule {
			t.Errorf("%s: %s by %s, want %s by %s", c.kind, d.Action, d.Rule, c.action, c.rule)
		}
	}
}
