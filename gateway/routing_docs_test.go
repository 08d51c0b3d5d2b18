package gateway

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/jsonrtc/jsonrtc/internal/testenv"
	"github.com/jsonrtc/jsonrtc/routing"
)

// Each example configuration of docs/routing.md loads (unknown keys
// fail, every key is validated) and routes as the text after it says.
func TestDocsRoutingExamples(t *testing.T) {
	blocks := testenv.FencedBlocks(t, filepath.Join("..", "docs", "routing.md"), "yaml")
	if len(blocks) != 2 {
		t.Fatalf("docs/routing.md has %d yaml blocks, want 2 (IMS, PBX)", len(blocks))
	}
	type check struct {
		req  routing.Request
		want string
	}
	checks := [][]check{
		{ // IMS
			{routing.Request{Application: "subscribers", Identity: "alice", Target: "020-7946-0000"}, "sip trunk core, target +442079460000@ims.example.net"},
			{routing.Request{Application: "subscribers", Identity: "alice", Target: "tel:+15551234"}, "sip trunk core, target sip:+15551234@ims.example.net"},
			{routing.Request{Application: "subscribers", Identity: "alice", Target: "112"}, "sip trunk emergency, target 112"},
			{routing.Request{Application: "visitors", Guest: true, Target: "sales@ims.example.net"}, "sip trunk core, target sales@ims.example.net"},
			{routing.Request{Application: "visitors", Guest: true, Target: "+15551234"}, "reject 403 visitors may call sales only"},
			{routing.Request{Application: "subscribers", Target: "bob@ims.example.net", WebLive: true}, "web, target bob@ims.example.net"},
			{routing.Request{Application: "subscribers", Target: "bob@ims.example.net"}, "sip trunk core, target bob@ims.example.net"},
		},
		{ // PBX
			{routing.Request{Application: "staff", Target: "201"}, "sip trunk pbx, target 201@pbx.example.com"},
			{routing.Request{Application: "staff", Target: "9-1-555-123-4567"}, "sip trunk carrier, target +15551234567"},
			{routing.Request{Application: "staff", Target: "915551234567", Ext: map[string]string{"x-account-code": "77"}}, "sip trunk carrier, target +15551234567 [X-Account-Code: 77]"},
			{routing.Request{Application: "staff", Target: "919005551234"}, "reject 403 premium numbers are barred"},
			{routing.Request{Application: "staff", Target: "bob@example.com", WebLive: true}, "web, target bob@example.com"},
			{routing.Request{Application: "staff", Target: "bob@example.com"}, "sip trunk pbx, target bob@example.com"},
			{routing.Request{Application: "staff", Target: "someone@elsewhere.example", Source: netip.MustParseAddr("127.0.0.1")}, "reject 404 not a number this gateway serves"},
		},
	}
	for i, b := range blocks {
		cfg, err := LoadConfig(writeConfig(t, b))
		if err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		r, err := routing.New(cfg.Routing)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range checks[i] {
			d := r.Decide(c.req)
			got := d.String()
			for _, h := range d.Headers {
				got += " [" + h.String() + "]"
			}
			if got != c.want {
				t.Errorf("example %d: %s -> %q, want %q", i, c.req.Target, got, c.want)
			}
		}
		if i == 1 { // the PBX's BYE, both ways
			x := r.Decide(routing.Request{Application: "staff", Target: "915551234567"}).Transform
			if hs := x.ToSIP(routing.Bye, false, map[string]string{"x-cause": "busy", "x-account-code": "77"}); len(hs) != 1 || hs[0].String() != "X-Hangup-Cause: busy" {
				t.Errorf("PBX BYE headers %v", hs)
			}
			get := func(name string) (string, bool) { return "Q.850;cause=16", name == "reason" }
			if hs := x.ToWeb(routing.Bye, false, get); len(hs) != 1 || hs[0].String() != "x-reason: Q.850;cause=16" {
				t.Errorf("PBX BYE to the web %v", hs)
			}
		}
	}
}
