package gateway

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
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
