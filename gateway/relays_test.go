package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/endpoint"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
)

// TestClusterRelayTakenOnce: alice's message to bob, on another node, is
// in bob's record before alice's state that processed it is written on
// hers. Her node dies in between: her client resumes on a third node and
// sends the message again, which that node's handler relays again. Bob
// takes it once: his session recognises the relay by its origin (alice's
// session and the sequence her client gave it) and answers the second
// delivery with the sequence the first got; alice's next message is the
// next thing bob reads.
func TestClusterRelayTakenOnce(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	b := dial(t, urls[1], protocol.SubprotocolOracle, nil)
	b.connect("bob@example.com")
	a := dial(t, urls[0], protocol.SubprotocolOracle, nil)
	a.connect("alice@example.com")
	msg := func(body string) *protocol.Frame {
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
			Header:  protocol.Header{Action: protocol.ActionSend, Initiator: "alice@example.com", Target: "bob@example.com"},
			Payload: protocol.EncodePayload(protocol.MessagePayload{Body: body}),
		}
	}
	one := msg("one")
	a.send(one)
	first := b.read()
	if first.Header.Action != protocol.ActionSend || first.Header.Initiator != "alice@example.com" {
		t.Fatalf("bob read %s", first.Marshal())
	}
	// The relay's mark is in bob's record, with the frame.
	gs[1].save(gs[1].lookup(b.sid))
	data, _, err := gs[1].store.Get(context.Background(), recordKey(b.sid))
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Relays) != 1 || r.Relays[0].From != a.sid || r.Relays[0].Seq != one.Control.Sequence {
		t.Fatalf("bob's record keeps relays %+v, want alice's sequence %d", r.Relays, one.Control.Sequence)
	}
	// Alice's client, resumed on n3, sends the message again: n3's
	// handler relays it as a frame of her session owned elsewhere.
	again := func(f *protocol.Frame) {
		req, _ := json.Marshal(inboundReq{Session: a.sid, Identity: "alice@example.com", Oracle: true, Owner: "n3", Frame: f.Marshal()})
		if got := string(gs[2].onInbound(req)); got != "ok" {
			t.Fatalf("inbound answered %q", got)
		}
	}
	again(one)
	two := msg("two")
	two.Control.Sequence, two.Control.SessionID = one.Control.Sequence+1, a.sid
	again(two)
	next := b.read()
	var p protocol.MessagePayload
	if err := protocol.DecodePayload(next.Payload, &p); err != nil || p.Body != "two" {
		t.Fatalf("bob read %s after the relay sent again, want message two", next.Marshal())
	}
	if next.Control.Sequence != first.Control.Sequence+1 {
		t.Fatalf("message two has sequence %d, want %d", next.Control.Sequence, first.Control.Sequence+1)
	}
}

// TestClusterCallFrameRelayTakenOnce: a call's frames reach the peer
// once when their sender's client sends them again, as it does when its
// node died after the call's host relayed a frame and before the
// sender's state that processed it was written. Alice, on n1, calls bob
// on n2: n1 hosts the call. Bob's candidates go through n1 to alice, his
// session owned elsewhere; alice's go from n1 to bob through n2 (a
// deliver). Each is sent again as from a client resumed on n3, through
// the host: the peer's next frame is the sender's next candidate.
func TestClusterCallFrameRelayTakenOnce(t *testing.T) {
	gs, urls := newClusterGateways(t, 3)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	trickle := func(p *peer, from, to, sub, cand string) *protocol.Frame {
		return &protocol.Frame{
			Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: sub},
			Header:  protocol.Header{Action: protocol.ActionTrickle, Initiator: from, Target: to},
			Payload: protocol.EncodePayload(protocol.CallPayload{Candidates: cand}),
		}
	}
	// again has the host, n1, take f from p's session again, forwarded
	// by n3, where its client resumed.
	again := func(p *peer, identity string, f *protocol.Frame) {
		t.Helper()
		req, _ := json.Marshal(inboundReq{Session: p.sid, Identity: identity, Oracle: true, Owner: "n3", Frame: f.Marshal()})
		if got := string(gs[0].onInbound(req)); got != "ok" {
			t.Fatalf("inbound answered %q", got)
		}
	}
	candidate := func(p *peer, cand string) {
		t.Helper()
		f := p.read()
		var pl protocol.CallPayload
		if f.Header.Action != protocol.ActionTrickle || protocol.DecodePayload(f.Payload, &pl) != nil || pl.Candidates != cand {
			t.Fatalf("%s read %s, want the candidate %q", p.sid, f.Marshal(), cand)
		}
	}
	for _, c := range []struct {
		name         string
		from, to     *peer
		fromID, toID string
		sub          string
	}{
		{"bob's through the host", b, a, "bob@example.com", "alice@example.com", bsub},
		{"alice's from the host", a, b, "alice@example.com", "bob@example.com", "c1"},
	} {
		one := trickle(c.from, c.fromID, c.toID, c.sub, "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host")
		c.from.send(one)
		candidate(c.to, "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host")
		again(c.from, c.fromID, one)
		two := trickle(c.from, c.fromID, c.toID, c.sub, "a=candidate:2 1 udp 1 192.0.2.2 1000 typ host")
		two.Control.Sequence, two.Control.SessionID = one.Control.Sequence+1, c.from.sid
		c.from.seq++ // the client's numbering goes on past two
		again(c.from, c.fromID, two)
		candidate(c.to, "a=candidate:2 1 udp 1 192.0.2.2 1000 typ host")
		t.Logf("%s: taken once", c.name)
	}
}

// TestClusterCallRelayBehindAMessage: the marks of a sender's relays are
// kept per stream. Bob's candidate waits in the queue of the call's host
// (n1) while his next frame, a message to alice, is relayed by his own
// node (n2) at once: alice takes the message, then the candidate, whose
// sequence is below the message's. One mark per sender dropped it as a
// relay sent again.
func TestClusterCallRelayBehindAMessage(t *testing.T) {
	gs, urls := newClusterGateways(t, 2)
	a, b, bsub := aliceCallsBobAcross(t, gs[0], urls[0], urls[1])
	waitFor(t, "n2 to see alice's session", func() bool { return len(gs[1].node.Remote("alice@example.com")) == 1 })
	b.seq++ // the candidate's, queued on n1
	cand := &protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: bsub,
			Sequence: b.seq, SessionID: b.sid},
		Header:  protocol.Header{Action: protocol.ActionTrickle, Initiator: "bob@example.com", Target: "alice@example.com"},
		Payload: protocol.EncodePayload(protocol.CallPayload{Candidates: "a=candidate:1 1 udp 1 192.0.2.1 1000 typ host"}),
	}
	b.send(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeRequest, Package: protocol.PackageMessaging},
		Header:  protocol.Header{Action: protocol.ActionSend, Initiator: "bob@example.com", Target: "alice@example.com"},
		Payload: protocol.EncodePayload(protocol.MessagePayload{Body: "hi"}),
	})
	if f := a.read(); f.Header.Action != protocol.ActionSend {
		t.Fatalf("alice read %s, want bob's message", f.Marshal())
	}
	req, _ := json.Marshal(inboundReq{Session: b.sid, Identity: "bob@example.com", Oracle: true, Owner: "n2", Frame: cand.Marshal()})
	if got := string(gs[0].onInbound(req)); got != "ok" {
		t.Fatalf("inbound answered %q", got)
	}
	if f := a.read(); f.Header.Action != protocol.ActionTrickle {
		t.Fatalf("alice read %s, want bob's candidate", f.Marshal())
	}
}

// TestRelayMarks: a session's marks are per stream of a sender, ordered
// by sequence then part, and a record written before streams and parts
// (pairs of sequences) reads as the stream of messages and starts.
func TestRelayMarks(t *testing.T) {
	var ms []relayMark
	if err := json.Unmarshal([]byte(`[{"from":"A","seq":5,"out":[[4,8],[5,9]]}]`), &ms); err != nil {
		t.Fatal(err)
	}
	s := &Session{}
	s.setRelays(ms)
	for _, c := range []struct {
		o     endpoint.Origin
		seq   uint64
		taken bool
	}{
		{endpoint.Origin{Session: "A", Sequence: 5}, 9, true},
		{endpoint.Origin{Session: "A", Sequence: 4}, 8, true},
		{endpoint.Origin{Session: "A", Sequence: 5, Part: 1}, 0, false},
		{endpoint.Origin{Session: "A", Sequence: 6}, 0, false},
		{endpoint.Origin{Session: "A", Sequence: 3, Stream: "c1"}, 0, false},
	} {
		if seq, taken, _ := s.takenLocked(c.o); taken != c.taken || seq != c.seq {
			t.Errorf("%+v: taken %v at %d, want %v at %d", c.o, taken, seq, c.taken, c.seq)
		}
	}
	answer := endpoint.Origin{Session: "A", Sequence: 7, Stream: "c1"}
	cand := answer
	cand.Part = 1
	s.noteRelayLocked(answer, 20, "b1")
	s.noteRelayLocked(cand, 21, "b1")
	for _, c := range []struct {
		o   endpoint.Origin
		seq uint64
	}{{answer, 20}, {cand, 21}} {
		if seq, taken, err := s.takenLocked(c.o); !taken || err != nil || seq != c.seq {
			t.Errorf("%+v: taken %v at %d (%v), want %d", c.o, taken, seq, err, c.seq)
		}
	}
	// The stream of messages and starts kept its own mark.
	if _, taken, _ := s.takenLocked(endpoint.Origin{Session: "A", Sequence: 6}); taken {
		t.Error("A's sequence 6 taken on its messages' stream after its call's 7")
	}
}

// TestRelayOvertakenOrForgotten: a relay sent again that its stream's
// mark passed is one taken before when the mark keeps its sequence; one
// within the sequences the mark keeps and not among them was overtaken
// by a later one, never taken; one older than them is forgotten (most
// likely taken).
func TestRelayOvertakenOrForgotten(t *testing.T) {
	s := &Session{}
	// 10..19 but 12: the mark keeps the last relaysKept, 11 on.
	for i := uint64(10); i <= 11+relaysKept; i++ {
		if i == 12 {
			continue // overtaken: never taken
		}
		s.noteRelayLocked(endpoint.Origin{Session: "A", Sequence: i}, 100+i, "")
	}
	for _, c := range []struct {
		seq  uint64
		want error
	}{{11, nil}, {12, errRelayOvertaken}, {10, errRelayForgotten}, {9, errRelayForgotten}} {
		if _, taken, err := s.takenLocked(endpoint.Origin{Session: "A", Sequence: c.seq}); !taken || !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("sequence %d: taken %v, %v; want %v", c.seq, taken, err, c.want)
		}
	}
}

// TestRelayMarksOfEndedCallsRetire: the mark of a call's stream goes
// once the session's leg of the call has ended and markGrace has
// passed; a live call's, and the stream of messages, stay.
func TestRelayMarksOfEndedCallsRetire(t *testing.T) {
	s := &Session{}
	msg := endpoint.Origin{Session: "A", Sequence: 3}
	ended := endpoint.Origin{Session: "A", Sequence: 4, Stream: "a1"}
	live := endpoint.Origin{Session: "B", Sequence: 2, Stream: "b7"}
	s.noteRelayLocked(msg, 10, "")
	s.noteRelayLocked(ended, 11, "c1")
	s.noteRelayLocked(live, 12, "c2")
	s.endCallLocked(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageCall, SubsessionID: "c1"},
		Header:  protocol.Header{Action: protocol.ActionShutdown},
	})
	const grace = time.Minute
	s.retireMarksLocked(time.Now().Add(grace-time.Second), grace)
	if len(s.relays) != 3 {
		t.Fatalf("%d marks within the grace, want 3", len(s.relays))
	}
	s.retireMarksLocked(time.Now().Add(grace+time.Second), grace)
	if _, taken, _ := s.takenLocked(ended); taken {
		t.Error("the ended call's mark outlived its grace")
	}
	for _, o := range []endpoint.Origin{msg, live} {
		if _, taken, _ := s.takenLocked(o); !taken {
			t.Errorf("%+v: mark gone", o)
		}
	}
	// A failed start ends the leg too; a frame of another package on the
	// same subsession does not.
	s.endCallLocked(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeMessage, Package: protocol.PackageMessaging, SubsessionID: "c2"},
		Header:  protocol.Header{Action: protocol.ActionShutdown},
	})
	if s.relays[keyOf(live)].Ended != 0 {
		t.Error("a messaging frame ended the call's mark")
	}
	s.endCallLocked(&protocol.Frame{
		Control: protocol.Control{Type: protocol.TypeError, Package: protocol.PackageCall, SubsessionID: "c2"},
		Header:  protocol.Header{Action: protocol.ActionStart, ErrorCode: 486},
	})
	if s.relays[keyOf(live)].Ended == 0 {
		t.Error("a failed start did not end the call's mark")
	}
}

// TestRelayMarksEndWithTheCall: through a gateway, the callee's mark of
// the caller's call stream is ended by the caller's hang-up, and the
// caller's of the callee's stream by her own; both outlive the end by
// markGrace, in the record too.
func TestRelayMarksEndWithTheCall(t *testing.T) {
	g, url := newGatewayOpts(t, nil, Options{Store: store.NewMemory()})
	a, b, bsub := aliceCallsBob(t, url, url)
	bobReoffers(t, b, a, bsub) // alice takes a relay of bob's call stream
	aliceHangsUp(a)
	expect(t, b.read(), protocol.TypeMessage, protocol.ActionShutdown)
	for _, c := range []struct {
		p   *peer
		sub string
	}{{a, "c1"}, {b, bsub}} {
		s := g.lookup(c.p.sid)
		waitFor(t, "the call's marks ended", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for _, m := range s.relays {
				if m.Stream != "" {
					if m.Sub != c.sub || m.Ended == 0 {
						return false
					}
					n++
				}
			}
			return n > 0
		})
		s.mu.Lock()
		marks := s.relaysSnapshotLocked()
		s.mu.Unlock()
		if len(marks) == 0 {
			t.Fatalf("%s: the marks went before their grace", c.p.sid)
		}
		if g.markGrace() != g.cfg.RecordTTL()+markGraceSlack {
			t.Fatal(g.markGrace())
		}
	}
}

// TestTakenBeforeKeepsItsCorrelation: a request sent again that its
// session took before, its sequence forgotten, counts as delivered under
// the correlation id it had, for its answer to map back (before, a
// message so taken was reported not delivered, 480); one overtaken by a
// later relay of its stream was not taken.
func TestTakenBeforeKeepsItsCorrelation(t *testing.T) {
	g := &Gateway{}
	var got string
	var delivered bool
	wf := &waitingFrame{was: "s7", redo: func(c string, d bool) { got, delivered = c, d }}
	if !takenBefore(wf, errRelayForgotten) || takenBefore(wf, errRelayOvertaken) {
		t.Fatal("forgotten is taken before, overtaken is not")
	}
	g.finish("bob", wf, 0, true)
	if got != "s7" || !delivered {
		t.Fatalf("redo(%q, %v), want s7 delivered", got, delivered)
	}
	if takenBefore(&waitingFrame{redo: func(string, bool) {}}, errRelayForgotten) {
		t.Fatal("a request sent again with no correlation id of before taken before")
	}
}
