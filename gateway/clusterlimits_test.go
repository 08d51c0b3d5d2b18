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
		p.send(aliceConnects())
		if r := p.read(); r.Header.ErrorCode != protocol.CodeServiceUnavailable {
			t.Fatalf("6th session, on n%d: %s", i+1, r.Marshal())
		}
	}
	n1[0].c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "n2 to see the end", func() bool { return len(gs[1].node.Remote("alice@example.com")) == 2 })
	connectOn(urls[1])
}

// TestClusterSessionAdmissionRace: ten connects of alice at once, five
// on each of two nodes, with a limit of 3: exactly three are admitted,
// the others refused (503), and a session that ends makes room for one
// more at once. Before, each node counted the other's sessions from its
// view of the directory, which lags a session started a moment ago:
// both nodes admitted up to three.
func TestClusterSessionAdmissionRace(t *testing.T) {
	const limit, each = 3, 5
	gs, urls := newClusterGatewaysMod(t, 2, nil, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Sessions: limit}}}}
	})
	var ps []*peer
	for range each {
		for _, u := range urls {
			ps = append(ps, dial(t, u, protocol.SubprotocolOracle, nil))
		}
	}
	for _, p := range ps {
		p.send(aliceConnects())
	}
	var admitted []int // indices in ps: ps[i] is on node i%2
	for i, p := range ps {
		switch r := p.read(); {
		case r.Control.Type == protocol.TypeResponse && r.Control.SessionID != "":
			admitted = append(admitted, i)
		case r.Header.ErrorCode != protocol.CodeServiceUnavailable:
			t.Fatalf("a connect answered %s", r.Marshal())
		}
	}
	if len(admitted) != limit {
		t.Fatalf("%d of alice's %d connects at once admitted, want %d", len(admitted), len(ps), limit)
	}
	// One ends; once the other node has heard, a connect there passes.
	first := admitted[0]
	other := gs[1-first%2]
	there := 0 // alice's sessions on first's node
	for _, i := range admitted {
		if i%2 == first%2 {
			there++
		}
	}
	waitFor(t, "the other node to see alice's sessions", func() bool { return len(other.node.Remote("alice@example.com")) == there })
	ps[first].c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the other node to hear of the end", func() bool { return len(other.node.Remote("alice@example.com")) == there-1 })
	p := dial(t, urls[1-first%2], protocol.SubprotocolOracle, nil)
	p.connect("alice@example.com")
}

// aliceConnects returns alice's connect request.
func aliceConnects() *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageRegister},
		Header:  protocol.Header{Action: protocol.ActionConnect, Initiator: "alice@example.com", Target: "alice@example.com"},
	}
}
