package interop

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Transformations of requests within a call (docs/routing.md,
// Transformations): header rules by method on the re-INVITE and the BYE
// the gateway sends (SIPp checks them), to_web on the BYE it receives.

func ext(name, value string) protocol.Ext {
	return protocol.Ext{Name: name, Kind: protocol.ExtString, Value: value}
}

// The re-INVITE carries the rules for re-INVITE (a constant, and the
// web re-offer's extension header renamed), which SIPp's scenario
// checks; SIPp's BYE's X-Carrier reaches the web side on the call's end.
func TestTransformReinviteAndFarBye(t *testing.T) {
	k := startKamailio(t)
	uas := startSipp(t, "uas_xform.xml", "")
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Routing.Headers = []routing.HeaderRuleConfig{
			{Header: "X-Plan", Value: "gold", Methods: []string{"re-INVITE"}},
			{Header: "X-Ref", Value: "ref-{ext:x-ref}", Methods: []string{"re-INVITE"}, On: "requests"},
		}
		c.Routing.ToWeb = []routing.ToWebConfig{{Header: "X-Carrier", Ext: "x-carrier", Methods: []string{"BYE"}, On: "requests"}}
	})
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	if ev := webAnswered(t, a); ev.Header != nil && len(ev.Header.Ext) > 0 {
		t.Errorf("the 200 of the INVITE got %+v: to_web is for BYE only", ev.Header.Ext)
	}
	webExpect(t, a, client.CallEstablished)
	if err := out.ReOffer(ctxT(t), strings.Replace(offer, "a=sendrecv", "a=sendonly", 1), ext("x-ref", "42")); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallReOfferAnswered)
	ev := webExpect(t, a, client.CallEnded)
	if ev.Header == nil {
		t.Fatal("the end has no header")
	}
	if x, ok := ev.Header.ExtValue("x-carrier"); !ok || x.Value != "carrier-bye" {
		t.Errorf("end extension headers %+v: no x-carrier: carrier-bye", ev.Header.Ext)
	}
	uas.expectSuccess(t)
	if first := receivedInvite(t, uas); strings.Contains(first, "X-Plan") {
		t.Errorf("the initial INVITE got the re-INVITE's rule:\n%s", first)
	}
}

// The BYE carries the rules for BYE, one reading the end frame's
// extension header. A reload that changes the rule applies to the next
// call, while the call in flight keeps the rule it started with.
func TestTransformByeAndReload(t *testing.T) {
	k := startKamailio(t)
	first := startSipp(t, "uas_answer.xml", "")
	second := startSipp(t, "uas_answer.xml", "")
	var cfg gateway.Config
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Routing.Headers = []routing.HeaderRuleConfig{
			{Header: "X-Reason", Value: "{ext:x-why}", Methods: []string{"BYE"}},
			{Header: "X-Plan", Value: "old", Methods: []string{"INVITE", "BYE"}, On: "requests"},
		}
	}, func(c *gateway.Config) { cfg = *c })
	a := w.connect(t, "open@"+domain, nil)
	call := func(uas *Sipp) *client.Call {
		t.Helper()
		out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
		if err != nil {
			t.Fatal(err)
		}
		webAnswered(t, a)
		webExpect(t, a, client.CallEstablished)
		return out
	}
	inFlight := call(first)
	cfg.Routing.Headers = []routing.HeaderRuleConfig{{Header: "X-Plan", Value: "new", Methods: []string{"INVITE", "BYE"}}}
	if restart, err := w.g.Reload(cfg); err != nil || len(restart) > 0 {
		t.Fatalf("reload: %v (restart-only sections changed: %v)", err, restart)
	}
	next := call(second)
	if err := inFlight.Hangup(ctxT(t), ext("x-why", "user hung up")); err != nil {
		t.Fatal(err)
	}
	if err := next.Hangup(ctxT(t), ext("x-why", "user hung up")); err != nil {
		t.Fatal(err)
	}
	first.expectSuccess(t)
	second.expectSuccess(t)
	for _, c := range []struct {
		s          *Sipp
		method     string
		has, hasnt []string
	}{
		{first, "INVITE", []string{"X-Plan: old"}, []string{"X-Reason"}},
		{first, "BYE", []string{"X-Plan: old", "X-Reason: user hung up"}, nil},
		{second, "INVITE", []string{"X-Plan: new"}, nil},
		{second, "BYE", []string{"X-Plan: new"}, []string{"X-Reason", "X-Plan: old"}},
	} {
		got := receivedRequest(t, c.s, c.method, 0)
		for _, h := range c.has {
			if !strings.Contains(got, h) {
				t.Errorf("%s's %s lacks %q:\n%s", c.s.name, c.method, h, got)
			}
		}
		for _, h := range c.hasnt {
			if strings.Contains(got, h) {
				t.Errorf("%s's %s has %q:\n%s", c.s.name, c.method, h, got)
			}
		}
	}
}

// The web side's transfer: the REFER carries the rule for REFER, which
// reads the transfer frame's extension header (SIPp's scenario checks
// it); the X-Carrier of SIPp's NOTIFYs reaches the web side on each
// transfer progress.
func TestTransformReferAndNotify(t *testing.T) {
	k := startKamailio(t)
	uas := startSipp(t, "uas_transferee_xform.xml", "")
	w := startWebGateway(t, k, func(c *gateway.Config) {
		c.Routing.Headers = []routing.HeaderRuleConfig{{Header: "X-Note", Value: "note-{ext:x-note}", Methods: []string{"REFER"}}}
		c.Routing.ToWeb = []routing.ToWebConfig{{Header: "X-Carrier", Ext: "x-carrier", Methods: []string{"NOTIFY"}}}
	})
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	if code, err := out.Transfer(ctxT(t), "sip:carol@example.com", ext("x-note", "please")); err != nil || code != 202 {
		t.Fatalf("transfer: %d %v", code, err)
	}
	for _, want := range []int{100, 200} {
		ev := webExpect(t, a, client.CallTransferProgress)
		if ev.Code != want {
			t.Fatalf("transfer progress %d (%s), want %d", ev.Code, ev.Reason, want)
		}
		if ev.Header == nil {
			t.Fatalf("progress %d has no header", want)
		}
		if x, ok := ev.Header.ExtValue("x-carrier"); !ok || x.Value != "carrier-notify" {
			t.Errorf("progress %d: no x-carrier: carrier-notify in %+v", want, ev.Header.Ext)
		}
	}
	webExpect(t, a, client.CallEnded)
	uas.expectSuccess(t)
}

// A web session's REGISTER binds the AOR of its application's
// sip_identity (SIPp's registrar checks To and From, and that no identity
// is asserted) and goes through the trunk a register rule names, failing
// over from the proxy that answers 503; so does its removal.
func TestRegisterIdentityThroughTrunk(t *testing.T) {
	down := startSipp(t, "registrar_503.xml", "")
	up := startSipp(t, "registrar_identity.xml", "")
	trunks := map[string]routing.TrunkConfig{"reg": {Proxies: []string{proxyOf(down), proxyOf(up)}}}
	w := startWebGateway(t, &Kamailio{Addr: "127.0.0.1:" + strconv.Itoa(up.Port)},
		routed(trunks, routing.RuleConfig{Name: "registrations", For: []string{"register"}, ActionConfig: routing.ActionConfig{Trunk: "reg"}}))
	a := w.connect(t, "open@"+domain, nil) // returns once registered
	a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.g.Shutdown(ctx); err != nil { // ends the session: the removal
		t.Fatal(err)
	}
	down.expectSuccess(t)
	up.expectSuccess(t)
}

// Outside a call, through Kamailio: the X-Carrier of SIPp's 202 to a
// web send reaches the delivery report, and those of SIPp's 200 to a
// voicemail SUBSCRIBE and of its NOTIFY reach the start's answer and
// the notify frame, as extension headers; the gateway's 200 to the
// NOTIFY carries the header rule for NOTIFY responses (SIPp checks it).
func TestTransformMessageAndNotify(t *testing.T) {
	env := startEventsEnv(t, func(c *gateway.Config) {
		c.Routing.Headers = []routing.HeaderRuleConfig{{Header: "X-Served", Value: "vm-{identity}", Methods: []string{"NOTIFY"}, On: "responses"}}
		c.Routing.ToWeb = []routing.ToWebConfig{{Header: "X-Carrier", Ext: "x-carrier", Methods: []string{"MESSAGE", "SUBSCRIBE", "NOTIFY"}, On: "responses"},
			{Header: "X-Carrier", Ext: "x-carrier", Methods: []string{"NOTIFY"}, On: "requests"}}
	})
	alice := env.web(t, "alice@"+domain)
	carrier := func(f *protocol.Frame, want string) {
		t.Helper()
		if x, ok := f.Header.ExtValue("x-carrier"); !ok || x.Value != want {
			t.Errorf("%s/%s extension headers %+v: no x-carrier: %s", f.Control.Type, f.Header.Action, f.Header.Ext, want)
		}
	}

	uas := startSipp(t, "uas_message_xform.xml", "")
	send := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: "alice@" + domain, Target: "uas-" + strconv.Itoa(uas.Port) + "@" + domain},
		Payload: protocol.EncodePayload(protocol.MessagePayload{ContentType: "text/plain", Body: "hello sip"}),
	}
	if _, err := alice.SendFrame(ctxT(t), send); err != nil {
		t.Fatal(err)
	}
	rep := frame(t, alice, protocol.PackageMessaging, protocol.ActionSend, func(f *protocol.Frame) bool { return f.Control.Type != protocol.TypeRequest })
	if rep.Control.Type != protocol.TypeResponse || rep.Header.ResponseCode != 202 {
		t.Fatalf("delivery report %s %d %d %s", rep.Control.Type, rep.Header.ResponseCode, rep.Header.ErrorCode, rep.Header.Reason)
	}
	carrier(rep, "carrier-msg")
	uas.expectSuccess(t)

	notifier := startSipp(t, "mwi_notifier_xform.xml", "")
	mailbox := "sip:uas-" + strconv.Itoa(notifier.Port) + "@" + domain
	if _, err := alice.SendFrame(ctxT(t), startFrame(protocol.PackageMessageNotification, "m1", "alice@"+domain, mailbox)); err != nil {
		t.Fatal(err)
	}
	r := response(t, alice, protocol.PackageMessageNotification, "m1")
	if r.Control.Type != protocol.TypeResponse || r.Header.ResponseCode != 200 {
		t.Fatalf("subscribe answered %s %d %s", r.Control.Type, r.Header.ErrorCode, r.Header.Reason)
	}
	carrier(r, "carrier-sub")
	carrier(frame(t, alice, protocol.PackageMessageNotification, protocol.ActionNotify, nil), "carrier-vm")
	if _, err := alice.SendFrame(ctxT(t), shutdownFrame(protocol.PackageMessageNotification, "m1", mailbox)); err != nil {
		t.Fatal(err)
	}
	notifier.expectSuccess(t)
}
