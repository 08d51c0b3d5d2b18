package interop

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jsonrtc/jsonrtc/client"
	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/templates"
)

const scoreTemplate = `
actions:
  - action: x-score
    package: call
    headers: {required: [X-Game], optional: [X-Round]}
    schema: {type: object, required: [points], properties: {points: {type: integer}}}
    sip: {method: INFO, info_package: x-score, content_type: application/json}
  - action: x-page
    package: messaging
    headers: {required: [X-Desk]}
    sip: {method: MESSAGE, content_type: text/plain}
  - action: x-alert
    package: call
    headers: {optional: [X-Desk]}
    schema: {type: object}
    sip: {method: NOTIFY, event: x-alert, receive: true}
  - action: x-card
    package: call
    sip: {method: MESSAGE, content_type: application/x-card+json, receive: true}
  - action: x-state
    package: call
    sip: {method: UPDATE, content_type: application/x-state+json, receive: true}
  - action: x-notice
    package: messaging
    headers: {optional: [X-Desk]}
    sip: {method: MESSAGE, content_type: application/x-notice+json, receive: true}
`

// TestTemplateInfo: a declared action of package call goes to SIPp as an
// INFO of its Info Package (checked there: Info-Package, Content-Type,
// the header and the body) and SIPp's 200 comes back as the response
// with its JSON body and declared header; SIPp's INFO of the package
// reaches the web client as a request, whose answer is the 200 SIPp
// checks.
func TestTemplateInfo(t *testing.T) {
	k := startKamailio(t)
	w := startTemplateGateway(t, k)
	uas := startSipp(t, "uas_template.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	res, err := out.Request(ctxT(t), "x-score", []protocol.Ext{{Name: "X-Game", Value: "chess"}}, json.RawMessage(`{"points":3}`))
	if err != nil {
		t.Fatalf("x-score: %v", err)
	}
	if round, _ := res.Header.ExtValue("X-Round"); res.Header.ResponseCode != 200 || string(res.Payload) != `{"rank":1}` || round.Value != "2" {
		t.Fatalf("x-score response: %s", res.Marshal())
	}
	ev := webNext(t, a, client.EventRequest)
	in := ev.Request.Frame
	if game, _ := in.Header.ExtValue("X-Game"); in.Header.Action != "x-score" || in.Control.SubsessionID != out.ID() ||
		string(in.Payload) != `{"points":9}` || game.Value != "go" {
		t.Fatalf("incoming x-score: %s", in.Marshal())
	}
	t.Logf("incoming request: %s", in.Marshal())
	if err := ev.Request.Respond(ctxT(t), 200, "", nil, json.RawMessage(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := out.Hangup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	uas.expectSuccess(t)
}

// TestTemplateReceive: SIPp's NOTIFY and MESSAGE in the call's dialog,
// each of a declared action that receives (by the NOTIFY's Event, by the
// MESSAGE's Content-Type), reach the Go client as requests of their
// action: its answer to the NOTIFY is the 200 with the JSON body SIPp
// checks; the MESSAGE's action is not one it handles
// (client.Options.Requests), so its SDK answers 405 at once, which SIPp
// checks too; its UPDATE with a body of the receiving x-state is
// answered 202 with a JSON body by the client.
func TestTemplateReceive(t *testing.T) {
	k := startKamailio(t)
	w := startTemplateGateway(t, k)
	uas := startSipp(t, "uas_template_receive.xml", "")
	a := w.connect(t, "open@"+domain, func(o *client.Options) { o.Requests = []string{"call/x-alert", "call/x-state"} })
	out, err := a.StartCall(ctxT(t), uasTarget(uas), offer)
	if err != nil {
		t.Fatal(err)
	}
	webAnswered(t, a)
	webExpect(t, a, client.CallEstablished)
	ev := webNext(t, a, client.EventRequest)
	in := ev.Request.Frame
	if desk, _ := in.Header.ExtValue("X-Desk"); in.Header.Action != "x-alert" || in.Control.SubsessionID != out.ID() ||
		string(in.Payload) != `{"level":2}` || desk.Value != "12" {
		t.Fatalf("incoming x-alert: %s", in.Marshal())
	}
	t.Logf("incoming request: %s", in.Marshal())
	if err := ev.Request.Respond(ctxT(t), 200, "", nil, json.RawMessage(`{"ack":true}`)); err != nil {
		t.Fatal(err)
	}
	// SIPp sends its MESSAGE once the NOTIFY's 200 came, and its UPDATE
	// once the MESSAGE's 405 came.
	ev = webNext(t, a, client.EventRequest)
	if in := ev.Request.Frame; in.Header.Action != "x-state" || string(in.Payload) != `{"held":true}` {
		t.Fatalf("incoming x-state: %s", in.Marshal())
	}
	if err := ev.Request.Respond(ctxT(t), 202, "", nil, json.RawMessage(`{"state":"ok"}`)); err != nil {
		t.Fatal(err)
	}
	webExpect(t, a, client.CallEnded)
	uas.expectSuccess(t)
}

// TestTemplateReceiveMessage: SIPp's MESSAGE of the receiving messaging
// action x-notice, through Kamailio to the registered web identity,
// reaches both of its sessions as a request of the action: one answers
// 405 at once (its Options.Requests lists nothing), the other 202 with
// a JSON body, which is the MESSAGE's response SIPp checks.
func TestTemplateReceiveMessage(t *testing.T) {
	k := startKamailio(t)
	w := startTemplateGateway(t, k)
	w.connect(t, "open@"+domain, func(o *client.Options) { o.Requests = []string{} }) // refuses every one
	u := w.connect(t, "open@"+domain, nil)
	uac := startSipp(t, "uac_template_message.xml", k.Addr, "-s", "open")
	ev := webNext(t, u, client.EventRequest)
	in := ev.Request.Frame
	if desk, _ := in.Header.ExtValue("X-Desk"); in.Header.Action != "x-notice" || in.EffectivePackage() != protocol.PackageMessaging ||
		string(in.Payload) != `{"n":1}` || desk.Value != "7" || in.Header.Initiator != "sip:bob@"+domain {
		t.Fatalf("incoming x-notice: %s", in.Marshal())
	}
	if err := ev.Request.Respond(ctxT(t), 202, "", nil, json.RawMessage(`{"seen":true}`)); err != nil {
		t.Fatal(err)
	}
	uac.expectSuccess(t)
}

func startTemplateGateway(t *testing.T, k *Kamailio) *webGW {
	t.Helper()
	var tc templates.Config
	dec := yaml.NewDecoder(strings.NewReader(scoreTemplate))
	dec.KnownFields(true)
	if err := dec.Decode(&tc); err != nil {
		t.Fatal(err)
	}
	return startWebGateway(t, k, func(c *gateway.Config) { c.Templates = tc })
}

// TestTemplateMessage: a declared messaging action goes out of dialog,
// routed through Kamailio to SIPp, as the MESSAGE its template says (the
// payload's body, the content type, the header, checked there); SIPp's
// 202 is the response.
func TestTemplateMessage(t *testing.T) {
	k := startKamailio(t)
	w := startTemplateGateway(t, k)
	uas := startSipp(t, "uas_template_message.xml", "")
	a := w.connect(t, "open@"+domain, nil)
	res, err := a.Request(ctxT(t), protocol.PackageMessaging, "x-page", uasTarget(uas), []protocol.Ext{{Name: "X-Desk", Value: "12"}},
		json.RawMessage(`{"body":"page desk 12"}`))
	if err != nil {
		t.Fatalf("x-page: %v", err)
	}
	if res.Header.ResponseCode != 202 {
		t.Fatalf("x-page response: %s", res.Marshal())
	}
	uas.expectSuccess(t)
}
