package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/templates"
)

const hookSecret = "0123456789abcdef0123"

// hookServer answers declared actions' webhooks with their payload's q
// as found, after checking the signature.
func hookServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := templates.Verify([]byte(hookSecret), r.Header.Get(templates.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(401)
			return
		}
		var req templates.WebhookRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Error(err)
		}
		var p struct{ Q string }
		_ = json.Unmarshal(req.Payload, &p)
		json.NewEncoder(w).Encode(map[string]any{"payload": map[string]any{"found": p.Q, "by": req.Identity, "action": req.Action}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func templatesConfig(t *testing.T, src string) templates.Config {
	t.Helper()
	var c templates.Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func lookupTemplate(url, action string) string {
	return `
webhook_networks: [127.0.0.0/8, "::1/128"]
actions:
  - action: ` + action + `
    package: messaging
    headers: {optional: [X-Tenant]}
    schema: {type: object, required: [q], properties: {q: {type: string, minLength: 1}}}
    webhook: {url: "` + url + `", secret: ` + hookSecret + `, timeout: 2s}
`
}

func declaredRequest(p *peer, action, payload string) *protocol.Frame {
	p.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging, CorrelationID: "q" + action},
		Header:  protocol.Header{Action: protocol.Action(action), Initiator: "alice@example.com", Ext: []protocol.Ext{{Name: "X-Tenant", Value: "acme"}}},
		Payload: json.RawMessage(payload),
	})
	return p.read()
}

// TestTemplateWebhook: a declared action answered by its webhook comes
// back as the response, a payload the schema refuses is 400 naming the
// field, and an undeclared action is still 405.
func TestTemplateWebhook(t *testing.T) {
	srv := hookServer(t)
	g, url := newGateway(t, func(c *Config) { c.Templates = templatesConfig(t, lookupTemplate(srv.URL, "x-lookup")) })
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	f := declaredRequest(a, "x-lookup", `{"q":"bob"}`)
	expect(t, f, protocol.TypeResponse, "x-lookup")
	if f.Header.ResponseCode != 200 || f.Control.CorrelationID != "qx-lookup" || f.Control.Package != protocol.PackageMessaging ||
		string(f.Payload) != `{"action":"x-lookup","by":"alice@example.com","found":"bob"}` {
		t.Fatalf("response = %s", f.Marshal())
	}
	t.Logf("example response: %s", f.Marshal())
	f = declaredRequest(a, "x-lookup", `{"q":""}`)
	if f.Control.Type != protocol.TypeError || f.Header.ErrorCode != 400 || !strings.HasPrefix(f.Header.Reason, "payload.q: minLength") {
		t.Fatalf("schema error = %s", f.Marshal())
	}
	f = declaredRequest(a, "x-other", `{"q":"bob"}`)
	if f.Control.Type != protocol.TypeError || f.Header.ErrorCode != 405 {
		t.Fatalf("undeclared action = %s", f.Marshal())
	}
	m := scrape(t, g)
	for _, want := range []string{`jsonrtc_declared_answers_total{action="x-lookup",class="2xx"} 1`, `jsonrtc_declared_answers_total{action="x-lookup",class="4xx"} 1`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics has no %s", want)
		}
	}
}

// TestReloadTemplates: a template added by a reload applies to the next
// request; a bad one changes nothing and names its key.
func TestReloadTemplates(t *testing.T) {
	srv := hookServer(t)
	var base Config
	g, url := newGateway(t, func(c *Config) { base = *c })
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	if f := declaredRequest(a, "x-lookup", `{"q":"bob"}`); f.Header.ErrorCode != 405 {
		t.Fatalf("before the reload: %s", f.Marshal())
	}
	next := base
	next.Templates = templatesConfig(t, lookupTemplate(srv.URL, "x-lookup"))
	if others, err := g.Reload(next); err != nil || len(others) > 0 {
		t.Fatalf("reload: %v (others changed %v)", err, others)
	}
	if f := declaredRequest(a, "x-lookup", `{"q":"bob"}`); f.Header.ResponseCode != 200 {
		t.Fatalf("after the reload: %s", f.Marshal())
	}
	bad := next
	bad.Templates = templatesConfig(t, lookupTemplate("ftp://nowhere", "x-lookup"))
	if _, err := g.Reload(bad); err == nil || !strings.Contains(err.Error(), "templates.actions[0].webhook.url") {
		t.Fatalf("bad reload: %v", err)
	}
	if f := declaredRequest(a, "x-lookup", `{"q":"bob"}`); f.Header.ResponseCode != 200 {
		t.Fatalf("after a refused reload: %s", f.Marshal())
	}
}
