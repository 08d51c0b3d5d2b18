package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/gateway"
)

// TestICEServers: the Go client takes the ICE servers of its connect
// response (STUN from web.ice_servers, TURN from web.turn with a
// credential of its identity and its expiry) and renews them with an
// ice_servers request; a gateway without either gives none.
func TestICEServers(t *testing.T) {
	_, url := startGateway(t, func(c *gateway.Config) {
		c.Web.ICEServers = []gateway.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}
		c.Web.TURN = gateway.TURNConfig{URLs: []string{"turn:127.0.0.1:3478"}, Secret: "0123456789abcdef-secret", TTL: gateway.Duration(time.Hour)}
	})
	a := connect(t, url, "alice@example.com", nil)
	ss, exp := a.ICEServers()
	if len(ss) != 2 || ss[0].URLs[0] != "turn:127.0.0.1:3478" || !strings.HasSuffix(ss[0].Username, ":alice@example.com") || ss[0].Credential == "" || ss[1].URLs[0] != "stun:127.0.0.1:3478" {
		t.Fatalf("ICE servers %+v", ss)
	}
	if left := time.Until(exp); left < 59*time.Minute || left > time.Hour {
		t.Fatalf("TURN credential expires in %v, want an hour", left)
	}
	renewed, exp2, err := a.RenewICEServers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(renewed) != 2 || renewed[0].Credential == "" || exp2.Before(exp) {
		t.Fatalf("renewed %+v expiring %v (first %v)", renewed, exp2, exp)
	}

	_, url2 := startGateway(t, nil)
	b := connect(t, url2, "bob@example.com", nil)
	if ss, exp := b.ICEServers(); ss != nil || !exp.IsZero() {
		t.Fatalf("ICE servers without configuration: %+v %v", ss, exp)
	}
	if ss, _, err := b.RenewICEServers(t.Context()); err != nil || ss != nil {
		t.Fatalf("renewed without configuration: %+v %v", ss, err)
	}
}
