package gateway

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/routing"
)

// syncBuffer is a log sink the gateway's goroutines write to while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A rule of the routing section refuses a web call through the real
// gateway, and the debug log says which rule and why the earlier one did
// not match.
func TestRoutingRejectsAndExplains(t *testing.T) {
	var logs syncBuffer
	guest := false
	g, url := newGatewayOpts(t, func(c *Config) {
		c.Routing.Rules = []routing.RuleConfig{
			{Name: "lan", From: routing.OriginMatch{Networks: []string{"10.0.0.0/8"}}, ActionConfig: routing.ActionConfig{Web: true}},
			{Name: "members-no-premium", From: routing.OriginMatch{Guest: &guest}, To: routing.TargetMatch{Prefixes: []string{"0900"}},
				ActionConfig: routing.ActionConfig{Reject: &routing.RejectConfig{Code: 403, Reason: "premium numbers are barred"}}},
		}
	}, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	a.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c2", CorrelationID: "c2"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "0900123"},
		Payload: sdpPayload(sdpOffer),
	})
	f := a.read()
	expect(t, f, protocol.TypeError, protocol.ActionStart)
	if f.Header.ErrorCode != 403 || f.Header.Reason != "premium numbers are barred" {
		t.Fatalf("error %s", f.Marshal())
	}
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `jsonrtc_routing_decisions_total{action="reject",kind="call",rule="members-no-premium"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "msg=routed") {
			line = l
		}
	}
	for _, want := range []string{"rule=members-no-premium", `lan: from.networks: 127.0.0.1 is in none of [10.0.0.0/8]`, "decision=\"reject 403 premium numbers are barred\""} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %q", line, want)
		}
	}
}

// A reload applies the routing section to the next call; a bad one is
// refused naming the key and leaves the rules as they were.
func TestReloadRouting(t *testing.T) {
	var base Config
	g, url := newGatewayOpts(t, func(c *Config) { base = *c }, Options{})
	a := dial(t, url, protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	start := func(sub string) *protocol.Frame {
		a.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: sub, CorrelationID: sub},
			Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "alice@example.com", Target: "nobody@example.com"},
			Payload: sdpPayload(sdpOffer),
		})
		return a.read()
	}
	if f := start("c2"); f.Header.ErrorCode != 404 {
		t.Fatalf("before the reload: %s", f.Marshal())
	}
	barred := base
	barred.Routing.Rules = []routing.RuleConfig{{Name: "bar", ActionConfig: routing.ActionConfig{Reject: &routing.RejectConfig{Code: 403, Reason: "barred"}}}}
	if restart, err := g.Reload(barred); err != nil || len(restart) > 0 {
		t.Fatalf("reload: %v (restart-only sections changed %v)", err, restart)
	}
	if f := start("c3"); f.Header.ErrorCode != 403 || f.Header.Reason != "barred" {
		t.Fatalf("after the reload: %s", f.Marshal())
	}
	bad := barred
	bad.Routing.Rules = []routing.RuleConfig{{Name: "bad", ActionConfig: routing.ActionConfig{Trunk: "nope"}}}
	if _, err := g.Reload(bad); err == nil || !strings.Contains(err.Error(), "routing.rules[0].trunk") {
		t.Fatalf("bad reload: %v", err)
	}
	if f := start("c4"); f.Header.ErrorCode != 403 {
		t.Fatalf("after a refused reload: %s", f.Marshal())
	}
	other := barred
	other.Calls.RingTimeout *= 2
	other.Routing.ToWeb = []routing.ToWebConfig{{Header: "X-Carrier", Ext: "x-carrier"}}
	if restart, err := g.Reload(other); err != nil || len(restart) != 1 || restart[0] != "calls" {
		t.Fatalf("a change outside routing: %v (restart-only sections changed %v, want [calls])", err, restart)
	}
}
