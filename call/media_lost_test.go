package call

import (
	"encoding/json"
	"testing"
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
