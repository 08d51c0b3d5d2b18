package client

import (
	"testing"
	"testing/synctest"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestCallFigures: the gateway's shutdown that echoes ours with the
// media's figures (docs/protocol.md §5.8) is the call's CallFigures, once;
// a second copy, or one on a call we did not hang up, is a plain frame.
func TestCallFigures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		c := dial(t, f, nil)
		k, _ := c.StartCall(t.Context(), "bob@example.com", sdpA)
		f.next(t)
		if err := k.Hangup(t.Context()); err != nil {
			t.Fatal(err)
		}
		sd := f.next(t)
		figures := srvCall(protocol.TypeMessage, "c2", sd.Control.CorrelationID, protocol.ActionShutdown)
		figures.Payload = protocol.EncodePayload(protocol.ShutdownPayload{Media: []protocol.MediaStats{{Side: "web", Packets: 7}, {Side: "sip", Packets: 9}}})
		f.send(figures, false)
		ev := wantCall(t, c, k, CallFigures)
		if len(ev.Media) != 2 || ev.Media[0].Packets != 7 || ev.Media[1].Packets != 9 {
			t.Fatalf("figures %+v", ev.Media)
		}
		f.send(figures, false)
		if ev := nextEvent(t, c); ev.Kind != EventFrame {
			t.Fatalf("a second copy gave %v", ev)
		}
	})
}
