package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/jsonrtc/jsonrtc/store/natsstore"
)

// TestClusterRestartFreshSubsessions: n1 hosts alice's call with bob
// (both on n1) and is killed; alice resumes on n2, which adopts the
// call, bob's leg keeping the id n1 gave it. n1 comes back on its store,
// bob resumes there, and carol, on n1, calls bob: the new call's
// subsession for bob is not the adopted call's, and bob's re-offer in
// that call still reaches alice. Before, n1 numbered from 1 again and
// gave carol's call bob's id of the adopted call.
func TestClusterRestartFreshSubsessions(t *testing.T) {
	a2, b2, url, bsub := restartAfterAdoption(t)
	c := dial(t, url, protocol.SubprotocolOracle, nil)
	c.connect("carol@example.com")
	c.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageCall, SubsessionID: "c9"},
		Header:  protocol.Header{Action: protocol.ActionStart, Initiator: "carol@example.com", Target: "bob@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{SDP: sdpOffer}),
	})
	in := b2.read()
	expect(t, in, protocol.TypeRequest, protocol.ActionStart)
	if in.Header.Initiator != "carol@example.com" {
		t.Fatalf("bob got %s, want carol's call", in.Marshal())
	}
	if in.Control.SubsessionID == bsub {
		t.Fatalf("carol's call reached bob on %q, the subsession of his adopted call with alice", bsub)
	}
	bobReoffersAndHangsUp(t, b2, a2, bsub)
}

// restartAfterAdoption has n1 host alice's call with bob (both on n1)
// and be killed; alice resumes on n2 (a2), which adopts the call; n1
// comes back on its store (at url) and bob resumes on it (b2). bsub is
// bob's subsession of the call.
func restartAfterAdoption(t *testing.T) (a2, b2 *peer, url, bsub string) {
	t.Helper()
	var e store.Store
	k := &killedStore{}
	gs, urls := newClusterGatewaysOn(t, 2, func(s store.Store) store.Store {
		if e == nil {
			e, k.Store = s, s
			return k
		}
		return s
	})
	var a, b *peer
	a, b, bsub = aliceCallsBob(t, urls[0], urls[0])
	// Killed before the answer's write (out of line), n1 left the
	// ringing call's record: n2 adopted a ringing call, in which bob's
	// re-offer was lost or, taken on n1, opened a new call to alice.
	if rec, _, _ := callAnswered(t, gs[1], a.sid, "c1"); rec.Host != "n1" {
		t.Fatalf("the call's record names host %q, want n1", rec.Host)
	}
	k.killed.Store(true)
	gs[0].node.Close()
	a.c.CloseNow()
	b.c.CloseNow()
	a2 = resumeWS(t, urls[1], "alice@example.com", a.sid, a.seq+1, a.last)
	callHost(t, gs[1], a.sid, "c1", "n2")
	n1, err := cluster.Start(context.Background(), e.(*natsstore.Embedded).Conn(), cluster.Options{Name: "n1", LeaseTTL: 3 * time.Second, DirectoryTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n1.Close)
	_, url = newGatewayOpts(t, nil, Options{Store: e, Cluster: n1})
	b2 = resumeWS(t, url, "bob@example.com", b.sid, b.seq+1, b.last)
	return a2, b2, url, bsub
}
