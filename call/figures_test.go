package call

import (
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
)

// TestMediaFiguresToHangup: the web side that hangs up an anchored call
// gets the figures of the media's delete too (docs/protocol.md §5.8): a
// shutdown on its subsession with its own shutdown's correlation and
// itself as initiator, after the delete, caller or callee. wsc.js, which
// expects nothing after its shutdown, gets nothing.
func TestMediaFiguresToHangup(t *testing.T) {
	for _, tc := range []struct {
		name     string
		incoming bool
		oracle   bool
	}{
		{"caller", false, false},
		{"callee", true, false},
		{"wsc.js caller", false, true},
	} {
		t.Run(tc.name, inBubble(func(t *testing.T) {
			e, eng := newMediaEnv(t, time.Minute)
			var (
				w   *fakeEP
				fc  *fakeCall
				sub string
			)
			if tc.incoming {
				var eps []*fakeEP
				var st []*protocol.Frame
				fc, eps, st = e.incoming(t, 1)
				eng.expect(t, "offer")
				w, sub = eps[0], st[0].Control.SubsessionID
				e.answerIn(t, fc, w, st[0])
				eng.expect(t, "answer")
			} else {
				w = e.ep("alice@web.example")
				w.oracle = tc.oracle
				f := wf{typ: protocol.TypeRequest, act: protocol.ActionStart, sub: "c1", seq: 1, p: protocol.CallPayload{SDP: webOffer}}.frame()
				f.Header.Target = "bob@sip.example"
				e.h.HandleFrame(w, f)
				fc, sub = e.dialled(t), "c1"
				eng.expect(t, "offer")
				e.answerOut(t, w, fc)
				eng.expect(t, "answer")
			}
			e.send(w, wf{typ: protocol.TypeMessage, act: protocol.ActionShutdown, sub: sub, seq: 5, corr: "c5"})
			fc.expectOp(t, "hangup")
			eng.expect(t, "delete")
			if tc.oracle {
				w.quiet(t)
				eng.idle(t, e)
				return
			}
			f := w.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
			if f.Control.SubsessionID != sub || f.Control.CorrelationID != "c5" || f.Header.Initiator != w.identity {
				t.Fatalf("figures on %q corr %q from %q", f.Control.SubsessionID, f.Control.CorrelationID, f.Header.Initiator)
			}
			// The browser's leg first: the first offer's (100 packets
			// in the fake's figures) when it called, the other's when
			// the phone did.
			web, sip := uint64(100), uint64(80)
			if tc.incoming {
				web, sip = sip, web
			}
			var p protocol.ShutdownPayload
			if err := protocol.DecodePayload(f.Payload, &p); err != nil || len(p.Media) != 2 ||
				p.Media[0].Side != "web" || p.Media[0].Packets != web || p.Media[1].Side != "sip" || p.Media[1].Packets != sip {
				t.Fatalf("figures %s (%v)", f.Payload, err)
			}
			if err := protocol.Validate(f); err != nil {
				t.Fatalf("the frame does not validate: %v", err)
			}
			w.quiet(t)
			eng.idle(t, e)
		}))
	}
}
