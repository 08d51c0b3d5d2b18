package gateway

import (
	"testing"

	"github.com/coder/websocket"
	"github.com/jsonrtc/jsonrtc/limits"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestClusterSessionLimit: an identity's session limit (5) holds
// across the nodes: with 3 of alice's sessions on n1 and 2 on n2,
// a 6th is refused on either node (503), and one that ends makes room.
// Each node counted its own before: n2 took 5 of its own.
func TestClusterSessionLimit(t *testing.T) {
	gs, urls := newClusterGatewaysMod(t, 2, nil, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Sessions: 5}}}}
	})
	connectOn := func(url string) *peer {
		p := dial(t, url, protocol.SubprotocolOracle, nil)
		p.connect("alice@example.com")
		return p
	}
	var n1 []*peer
	for range 3 {
		n1 = append(n1, connectOn(urls[0]))
	}
	connectOn(urls[1])
	connectOn(urls[1])
	waitFor(t, "n2 to see alice's sessions on n1", func() bool { return len(gs[1].node.Remote("alice@example.com")) == 3 })
	waitFor(t, "n1 to see alice's sessions on n2", func() bool { return len(gs[0].node.Remote("alice@example.com")) == 2 })
	for i, u := range urls {
		p := dial(t, u, protocol.SubprotocolOracle, nil)
		p.send(&protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
			Header:  protocol.Header{Action: protocol.ActionConnect, Initiator: "alice@example.com", Target: "alice@example.com"},
		})
		if r := p.read(); r.Header.ErrorCode != protocol.CodeServiceUnavailable {
			t.Fatalf("6th session, on n%d: %s", i+1, r.Marshal())
		}
	}
	n1[0].c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "n2 to see the end", func() bool { return len(gs[1].node.Remote("alice@example.com")) == 2 })
	connectOn(urls[1])
}
