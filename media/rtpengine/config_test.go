package rtpengine

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("empty config: %v", err)
	}
	if err := (Config{RTPEngine: []string{"127.0.0.1:2223", "127.0.0.1:2224"}, Policy: PolicyAlways,
		Weights: map[string]int{"127.0.0.1:2224": 3}, LostAfter: 3}).Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for key, c := range map[string]Config{
		"media.rtpengine[0]":             {RTPEngine: []string{"nohostport"}},
		"media.rtpengine[1]":             {RTPEngine: []string{"a:1", "a:1"}},
		"media.ping_interval":            {PingInterval: -time.Second},
		"media.figures_interval":         {FiguresInterval: -time.Second},
		"media.policy":                   {Policy: "sometimes"},
		"media.retransmit":               {Timeout: time.Second, Retransmit: 2 * time.Second},
		"media.weights: b:1":             {RTPEngine: []string{"a:1"}, Weights: map[string]int{"b:1": 2}},
		"media.weights: a:1":             {RTPEngine: []string{"a:1"}, Weights: map[string]int{"a:1": 0}},
		"media.lost_after":               {LostAfter: -1},
		"media.sdes[1]":                  {SDES: Targets{"ok.example.com", "trunk:"}},
		"media.codecs.strip[0]":          {Codecs: Codecs{Strip: []string{"PCMU\r\nX"}}},
		"media.codecs.offer":             {Codecs: Codecs{Offer: make([]string, 33)}},
		"media.routes[0].targets: names": {Routes: []RouteConfig{{}}},
		"media.routes[0].targets[0]":     {Routes: []RouteConfig{{Targets: Targets{"trunk:"}}}},
		"media.routes[0].policy":         {Routes: []RouteConfig{{Targets: Targets{"a.example"}, Policy: "often"}}},
		"media.routes[1].codecs.mask[0]": {Routes: []RouteConfig{{Targets: Targets{"a.example"}}, {Targets: Targets{"b.example"}, Codecs: &Codecs{Mask: []string{""}}}}},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%+v: %v, want an error naming %s", c, err, key)
		}
	}
}

func TestTargetsMatch(t *testing.T) {
	ts := Targets{"srtp.example.com", "trunk:carrier"}
	for _, tc := range []struct {
		target, trunk string
		want          bool
	}{
		{"bob@srtp.example.com", "", true},
		{"sip:bob@SRTP.example.com;transport=tls", "", true},
		{"sips:srtp.example.com:5061", "", true},
		{"bob@example.com", "", false},
		{"+15551234567", "carrier", true},
		{"bob@example.com", "other", false},
		{"bob@carrier", "", false},
	} {
		if got := ts.Match(tc.target, tc.trunk); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.target, tc.trunk, got, tc.want)
		}
	}
}

// TestRouteFor: the first route whose targets match decides what it
// sets; what it leaves out is the section's (policy, media.sdes,
// media.codecs).
func TestRouteFor(t *testing.T) {
	yes, no := true, false
	c := Config{
		Policy: PolicyAuto,
		SDES:   Targets{"srtp.example.com"},
		Codecs: Codecs{Strip: []string{"G722"}},
		Routes: []RouteConfig{
			{Targets: Targets{"trunk:carrier"}, Policy: PolicyAlways, Codecs: &Codecs{Transcode: []string{"G729"}}},
			{Targets: Targets{"srtp.example.com"}, SDES: &no},
			{Targets: Targets{"pbx.example.com", "srtp.example.com"}, SDES: &yes, Policy: PolicyNever},
		},
	}
	for _, tc := range []struct {
		target, trunk string
		want          Route
	}{
		{"bob@example.com", "", Route{Policy: PolicyAuto, Codecs: Codecs{Strip: []string{"G722"}}}},
		{"+15551234567", "carrier", Route{Policy: PolicyAlways, Codecs: Codecs{Transcode: []string{"G729"}}}},
		{"bob@srtp.example.com", "", Route{Policy: PolicyAuto, Codecs: Codecs{Strip: []string{"G722"}}}},
		{"sip:bob@pbx.example.com", "", Route{Policy: PolicyNever, SDES: true, Codecs: Codecs{Strip: []string{"G722"}}}},
	} {
		if got := c.RouteFor(tc.target, tc.trunk); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("RouteFor(%q, %q) = %+v, want %+v", tc.target, tc.trunk, got, tc.want)
		}
	}
}

// TestConfigOfDocs: the configuration docs/media.md shows is one jsonrtcd
// takes: every key known, every value valid.
func TestConfigOfDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/media.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Configuration\n\n```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/media.md has no yaml block under Configuration")
	}
	var top struct {
		Media Config `yaml:"media"`
	}
	dec := yaml.NewDecoder(strings.NewReader(block))
	dec.KnownFields(true)
	if err := dec.Decode(&top); err != nil {
		t.Fatal(err)
	}
	if err := top.Media.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := top.Media.RouteFor("+4420", "carrier"); r.Codecs.Strip[0] != "all" {
		t.Errorf("the carrier's route: %+v", r)
	}
	if r := top.Media.RouteFor("sip:bob@sbc.example.com", ""); r.Policy != PolicyNever {
		t.Errorf("the SBC's route: %+v", r)
	}
}
