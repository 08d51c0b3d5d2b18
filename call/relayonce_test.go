package call

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestRelayResentTakenOnce: what a call relays names the client frame
// it relays, so that a frame sent again is taken once by the sessions
// that took its relays (docs/cluster.md, "A relay is taken once"). The
// host of alice's call to bob's two sessions relays b1's candidate,
// then his answer (the 200 and the buffered candidate to alice, the
// cancel to b2), and dies before its snapshot of the answer is written;
// e2 adopts the ringing call and b1's client, whose node died too, sends
// the candidate and the answer again. Alice and b2 get nothing twice;
// the call goes on.
func TestRelayResentTakenOnce(t *testing.T) {
	var r1 replicas
	e1 := newEnv(t, time.Minute)
	e1.h.opts.Replicate = r1.hear
	a, b1, b2 := e1.ep("alice@web.example"), e1.ep("bob@web.example"), e1.ep("bob@web.example")
	for _, ep := range []*fakeEP{a, b1, b2} {
		ep.takeOnce()
	}
	st := forkedToBob(t, e1, a, b1, b2)
	ringing, _, _ := r1.get()
	cand := wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: st.Control.SubsessionID, seq: 1,
		p: protocol.CallPayload{Candidates: "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host"}}
	ans := wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 2,
		corr: st.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}}
	relayed := func(e *env) {
		t.Helper()
		e.send(b1, cand)
		e.send(b1, ans)
	}
	relayed(e1)
	if r := a.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 {
		t.Fatalf("alice's start answered %s", r.Marshal())
	}
	a.expect(t, protocol.TypeMessage, protocol.ActionTrickle)
	b2.expect(t, protocol.TypeMessage, protocol.ActionShutdown)

	e2 := newEnv(t, time.Minute)
	if err := e2.h.Restore(ringing, a, b1, b2); err != nil {
		t.Fatal(err)
	}
	relayed(e2)
	a.none(t)
	b2.none(t)
	// The call goes on on e2: alice's candidate reaches b1.
	e2.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionTrickle, sub: "c1", seq: 2,
		p: protocol.CallPayload{Candidates: "a=candidate:2 1 udp 1 192.0.2.2 1000 typ host"}})
	b1.expect(t, protocol.TypeMessage, protocol.ActionTrickle)
	// Alice hangs up: e1's copy relays it (as the dead host had), then
	// e2's, which the client sent it again to. Bob hears it once.
	hangUp := wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3}
	e1.send(a, hangUp)
	b1.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	e2.send(a, hangUp)
	b1.none(t)
}

// forkedToBob has a call bob (sessions b1 and b2) on "c1": both forks
// ring; it returns b1's start.
func forkedToBob(t *testing.T, e *env, a, b1, b2 *fakeEP) *protocol.Frame {
	t.Helper()
	f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
	f.Header.Target = "bob@web.example"
	e.h.HandleFrame(a, f)
	st := b1.expect(t, protocol.TypeRequest, protocol.ActionStart)
	b2.expect(t, protocol.TypeRequest, protocol.ActionStart)
	return st
}

// TestReofferResentTakenOnce: a re-offer sent again while it is
// outstanding (its sender's node died before writing the state that
// processed it; the call's host lives) is the same re-offer: not glare
// (491 to a client whose re-offer is then answered 200), nor relayed
// twice.
func TestReofferResentTakenOnce(t *testing.T) {
	e := newEnv(t, time.Minute)
	a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
	a.takeOnce()
	b.takeOnce()
	st := e.webCall(t, a, b, "c1", 1)
	ro := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 2, p: protocol.CallPayload{SDP: webOffer}}
	e.send(a, ro)
	in := b.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e.send(a, ro)
	a.none(t)
	b.none(t)
	e.send(b, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 2,
		corr: in.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if r := a.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 || r.Control.CorrelationID != "c2" {
		t.Fatalf("alice's re-offer answered %s", r.Marshal())
	}
	e.send(a, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: "c1", seq: 3})
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// TestDeclaredResentTakenOnce: a declared action's request sent again
// (its sender's node died before writing the state that processed it)
// reaches the other page once, and its answer comes back once.
func TestDeclaredResentTakenOnce(t *testing.T) {
	e := newEnv(t, time.Minute)
	act := scoreTemplates(t)().Lookup(protocol.PackageCall, "x-score")
	a, b := e.ep("alice@web.example"), e.ep("bob@web.example")
	a.takeOnce()
	b.takeOnce()
	e.webCall(t, a, b, "c1", 1)
	relayedDeclared(e, a, act, 2, time.Minute)
	r := b.expect(t, protocol.TypeRequest, "x-score")
	relayedDeclared(e, a, act, 2, time.Minute)
	b.none(t)
	e.send(b, wf{typ: protocol.TypeResponse, act: "x-score", sub: r.Control.SubsessionID, seq: 2, corr: r.Control.CorrelationID,
		state: protocol.StateFinal, code: 200})
	if got := a.expect(t, protocol.TypeResponse, "x-score"); got.Control.CorrelationID != "c2" {
		t.Fatalf("answer to alice: %s", got.Marshal())
	}
	a.none(t)
	hangUp(e, a, "c1", 3)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
}

// TestAnswerResentToAnAnsweredCall: the callee's answer sent again to a
// call answered already (its host, or the node that adopted it from the
// record written ahead of the answer, docs/cluster.md "A dead node")
// reaches a caller who lacks it, the host having died before the caller
// had it, and only once; a caller who had it gets nothing. Before, an
// answer to an answered call was dropped: the caller rang on while the
// callee talked.
func TestAnswerResentToAnAnsweredCall(t *testing.T) {
	var r1 replicas
	e1 := newEnv(t, time.Minute)
	e1.h.opts.Replicate = r1.hear
	a, b := e1.ep("alice@web.example"), e1.ep("bob@web.example")
	a.takeOnce()
	b.takeOnce()
	st := e1.webCall(t, a, b, "c1", 1)
	ans := wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 1,
		corr: st.Control.CorrelationID, state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}}
	e1.send(b, ans) // the live host: alice had it
	a.none(t)
	answered, _, _ := r1.get()

	// The host died before alice's session had the answer: e2 adopts the
	// answered call and alice's session knows no relay of it.
	a2 := newEP(a.id, a.identity)
	a2.takeOnce()
	e2 := newEnv(t, time.Minute)
	if err := e2.h.Restore(answered, a2, b); err != nil {
		t.Fatal(err)
	}
	e2.send(b, ans)
	if r := a2.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 || r.Control.CorrelationID != "c1" {
		t.Fatalf("alice's start answered %s", r.Marshal())
	}
	e2.send(b, ans)
	a2.none(t)
	// Bob's re-offer's answer still goes to him alone.
	e2.send(b, wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: st.Control.SubsessionID, seq: 2, p: protocol.CallPayload{SDP: webOffer}})
	ro := a2.expect(t, protocol.TypeRequest, protocol.ActionStart)
	e2.send(a2, wf{typ: protocol.TypeResponse, act: protocol.ActionStart, sub: "c1", seq: 2, corr: ro.Control.CorrelationID,
		state: protocol.StateFinal, code: 200, p: protocol.CallPayload{SDP: webOffer}})
	if r := b.expect(t, protocol.TypeResponse, protocol.ActionStart); r.Header.ResponseCode != 200 {
		t.Fatalf("bob's re-offer answered %s", r.Marshal())
	}
	a2.none(t)
	// Alice hangs up on both copies (e1's is the dead host's): bob hears
	// it once.
	hangUp(e1, a, "c1", 3)
	b.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
	hangUp(e2, a2, "c1", 3)
	b.none(t)
}
