package rtpengine

import (
	"strings"
	"testing"
	"time"
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
		"media.rtpengine[0]":  {RTPEngine: []string{"nohostport"}},
		"media.rtpengine[1]":  {RTPEngine: []string{"a:1", "a:1"}},
		"media.ping_interval": {PingInterval: -time.Second},
		"media.policy":        {Policy: "sometimes"},
		"media.retransmit":    {Timeout: time.Second, Retransmit: 2 * time.Second},
		"media.weights: b:1":  {RTPEngine: []string{"a:1"}, Weights: map[string]int{"b:1": 2}},
		"media.weights: a:1":  {RTPEngine: []string{"a:1"}, Weights: map[string]int{"a:1": 0}},
		"media.lost_after":    {LostAfter: -1},
		"media.sdes[1]":       {SDES: Targets{"ok.example.com", "trunk:"}},
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
