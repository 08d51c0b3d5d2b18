package call

import (
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// TestMediaLostFigures: the pool queries an answered call's figures
// every FiguresInterval; when its instance is lost, the browser's
// shutdown ("media relay lost") carries the last ones, each leg marked
// as of the query (docs/protocol.md §5.8), and the metrics see them.
// Before, it carried none: rtpengine is gone with its counters.
func TestMediaLostFigures(t *testing.T) {
	inBubble(func(t *testing.T) {
		e, eng, _ := newPooledMediaEnv(t, 5*time.Second)
		// The pool's first round (Start returns after its ping, before
		// its queries) is over before the call: the next is at 5 s.
		synctest.Wait()
		a, fc := e.outgoing(t)
		eng.expect(t, "offer")
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "b"})
		eng.expect(t, "answer")
		a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		time.Sleep(5 * time.Second) // the bubble's: the next round of queries is due
		eng.expect(t, "query")
		queried := time.Now() // the bubble's clock stands still until every goroutine waits
		eng.failing("ping", rtpengine.ErrTimeout)
		f := a.expect(t, protocol.TypeMessage, protocol.ActionShutdown)
		if f.Header.Reason != lostReason {
			t.Fatalf("shutdown reason %q", f.Header.Reason)
		}
		var p protocol.ShutdownPayload
		if err := json.Unmarshal(f.Payload, &p); err != nil {
			t.Fatal(err)
		}
		asOf := queried.UTC().Format("2006-01-02T15:04:05.000Z")
		if len(p.Media) != 2 || p.Media[0].Side != "web" || p.Media[0].Packets != 100 || p.Media[1].Packets != 80 ||
			p.Media[0].AsOf != asOf || p.Media[1].AsOf != asOf {
			t.Fatalf("shutdown's media %+v, want the query's figures as of %s", p.Media, asOf)
		}
		if n, _ := mediaFigure(t, e.h, "jsonrtc_media_packets", "web"); n != 1 {
			t.Fatalf("%d web legs observed, want the lost call's", n)
		}
		fc.expectOp(t, "hangup")
		e.assertIdle(t)
	})(t)
}

// TestMediaEndAnchored: EndAnchored (a gateway cut off from its cluster,
// whose peers delete its calls' media in rtpengine) ends an answered
// anchored call on both sides with its reason (the web side's shutdown,
// SIP's BYE Reason), and the call's media is deleted in rtpengine, which
// still answers; a second round finds nothing to end.
func TestMediaEndAnchored(t *testing.T) {
	inBubble(func(t *testing.T) {
		e, eng, _ := newPooledMediaEnv(t)
		a, fc := e.outgoing(t)
		off := eng.expect(t, "offer")
		fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "b"})
		eng.expect(t, "answer")
		a.expect(t, protocol.TypeResponse, protocol.ActionStart)
		const reason = "gateway cut off from its cluster"
		if n := e.h.EndAnchored(reason); n != 1 {
			t.Fatalf("EndAnchored ended %d calls, want 1", n)
		}
		if f := a.expect(t, protocol.TypeMessage, protocol.ActionShutdown); f.Header.Reason != reason {
			t.Fatalf("shutdown reason %q", f.Header.Reason)
		}
		if o := fc.expectOp(t, "hangup"); o.code != 503 || o.sdp != reason {
			t.Fatalf("SIP hang-up %+v, want 503 %q", o, reason)
		}
		if d := eng.expect(t, "delete"); d.CallID != off.CallID {
			t.Fatalf("delete %+v, want the call's", d)
		}
		e.assertIdle(t)
		if n := e.h.EndAnchored(reason); n != 0 {
			t.Fatalf("a second EndAnchored ended %d calls", n)
		}
	})(t)
}
