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
	ps, admitted := connectsAtOnce(t, urls, each)
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

// callStart is from's start of a call to to on sub.
func callStart(from, to, sub string) *protocol.Frame {
	return &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: sub},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: from, Target: to},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	}
}

// callsSeen waits until g's view of the directory has identity's
// sessions elsewhere in want calls.
func callsSeen(t *testing.T, g *Gateway, identity string, want int) {
	t.Helper()
	waitFor(t, g.node.Name()+" to see "+identity+"'s calls elsewhere", func() bool { return g.callsElsewhere(identity) == want })
}

// overThenFree: once g sees identity in one call elsewhere, p (a
// session of identity, on g) is refused a call to carol (c); after end
// has ended that call, and g has seen it, p's call rings carol.
func overThenFree(t *testing.T, g *Gateway, p *peer, identity string, c *peer, end func()) {
	t.Helper()
	callsSeen(t, g, identity, 1)
	refusedCall(t, p, identity, "carol@example.com")
	end()
	callsSeen(t, g, identity, 0)
	p.send(callStart(identity, "carol@example.com", "c3"))
	expect(t, c.read(), protocol.TypeRequest, protocol.ActionStart)
}

// endsCall has from (identity fromID) hang up its call on sub with to,
// which hears it.
func endsCall(t *testing.T, from, to *peer, fromID, toID, sub string) {
	t.Helper()
	from.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: sub},
		Header:  protocol.Header{Action: protocol.ActionShutdown, Initiator: fromID, Target: toID},
	})
	expect(t, to.read(), protocol.TypeMessage, protocol.ActionShutdown)
}

// refusedCall has p (identity from) start a call to to and expects 503.
func refusedCall(t *testing.T, p *peer, from, to string) {
	t.Helper()
	p.send(callStart(from, to, "c2"))
	if r := p.read(); r.Control.Type != protocol.TypeError || r.Header.ErrorCode != protocol.CodeServiceUnavailable {
		t.Fatalf("%s's call over the limit answered %s", from, r.Marshal())
	}
}

// TestClusterCallLimit: alice may be in one call (calls: 1). With her
// session on n1 in a call with bob, her session on n2 cannot start one
// with carol (503); once the first call ends, it can. Before, each node
// counted its own sessions' calls: n2 let alice's second call ring.
func TestClusterCallLimit(t *testing.T) {
	gs, urls := oneCallEach(t, 2)
	a1, b, bsub := aliceCallsBob(t, urls[0], urls[0])
	a2, c := connectedOn(t, urls[1], "alice@example.com"), connectedOn(t, urls[1], "carol@example.com")
	overThenFree(t, gs[1], a2, "alice@example.com", c, func() { endsCall(t, b, a1, "bob@example.com", "alice@example.com", bsub) })
}

// TestClusterAdoptedCallCounts: alice on n1 calls bob on n2 (calls: 1),
// n1 dies and n2, bob's node, adopts the call: it counts there, so bob's
// session on n3 cannot start another (503). Before, an adopted call
// counted nowhere.
func TestClusterAdoptedCallCounts(t *testing.T) {
	gs, urls := oneCallEach(t, 3)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	b3 := connectedOn(t, urls[2], "bob@example.com")
	connectedOn(t, urls[2], "carol@example.com")
	callHost(t, gs[1], a.sid, "c1", "n1")
	gs[0].node.Close()
	a.c.CloseNow()
	callHost(t, gs[1], b.sid, bsub, "n2")
	callsSeen(t, gs[2], "bob@example.com", 1)
	refusedCall(t, b3, "bob@example.com", "carol@example.com")
}

// oneCallEach runs n nodes whose identities may be in one call each.
func oneCallEach(t *testing.T, n int) ([]*Gateway, []string) {
	t.Helper()
	return newClusterGatewaysMod(t, n, nil, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Calls: 1}}}}
	})
}

// connectedOn connects identity at url.
func connectedOn(t *testing.T, url, identity string) *peer {
	t.Helper()
	p := dial(t, url, protocol.SubprotocolOracle, nil)
	p.connect(identity)
	return p
}

// connectsAtOnce sends alice's connect on each sockets on each node at
// once and returns the sockets, ps[i] on node i%len(urls), and the
// indices of those admitted; the others were refused with 503.
func connectsAtOnce(t *testing.T, urls []string, each int) (ps []*peer, admitted []int) {
	t.Helper()
	for range each {
		for _, u := range urls {
			ps = append(ps, dial(t, u, protocol.SubprotocolOracle, nil))
		}
	}
	for _, p := range ps {
		p.send(aliceConnects())
	}
	for i, p := range ps {
		switch r := p.read(); {
		case r.Control.Type == protocol.TypeResponse && r.Control.SessionID != "":
			admitted = append(admitted, i)
		case r.Header.ErrorCode != protocol.CodeServiceUnavailable:
			t.Fatalf("a connect answered %s", r.Marshal())
		}
	}
	return ps, admitted
}

// TestClusterSessionAdmissionBurst: 24 connects of alice at once on two
// nodes, with room for all: the admissions that lose the compare-and-set
// read the record again until they land, and every one is admitted.
func TestClusterSessionAdmissionBurst(t *testing.T) {
	const each = 12
	_, urls := newClusterGatewaysMod(t, 2, nil, func(c *Config) {
		c.Limits = limits.Config{Profiles: map[string]limits.Profile{limits.DefaultProfile: {Identity: limits.Quota{Sessions: 2 * each}}}}
	})
	if _, admitted := connectsAtOnce(t, urls, each); len(admitted) != 2*each {
		t.Fatalf("%d of alice's %d connects at once admitted, want all", len(admitted), 2*each)
	}
}

// TestClusterCalleeCallCounts: alice on n1 calls bob on n2 (calls: 1;
// the call's host is n1, alice's node): the call counts for bob too, on
// his node, so his session on n1 cannot start another (503); once it
// ends, it can. Before, n1 did not count the leg of a session another
// node owns, and n2 did not count a call hosted elsewhere: bob's leg
// counted nowhere.
func TestClusterCalleeCallCounts(t *testing.T) {
	gs, urls := oneCallEach(t, 2)
	a, b, _ := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	b1, c := connectedOn(t, urls[0], "bob@example.com"), connectedOn(t, urls[0], "carol@example.com")
	overThenFree(t, gs[0], b1, "bob@example.com", c, func() { endsCall(t, a, b, "alice@example.com", "bob@example.com", "c1") })
}
