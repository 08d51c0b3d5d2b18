package call

import (
	"context"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/sipgw"
)

// TestMediaRetrySDES: a phone that refuses a browser's RTP/AVP offer
// (488) under the auto policy gets the INVITE once more in SDES-SRTP: the
// browser's offer goes to rtpengine again on the same call and tags with
// RTP/SAVP and rtpengine's crypto, and that SDP is the second INVITE's
// (sipgw sends it: DialOptions.NotAcceptable); the call then goes on as
// any other. Under always, no retry: the 488 ends the call.
func TestMediaRetrySDES(t *testing.T) {
	for _, policy := range []rtpengine.Policy{rtpengine.PolicyAuto, rtpengine.PolicyAlways} {
		t.Run(string(policy), func(t *testing.T) {
			e, eng := newMediaEnv(t, time.Minute)
			e.h.far.route = func(string, string) rtpengine.Route { return rtpengine.Route{Policy: policy} }
			a, fc := e.outgoing(t)
			off := eng.expect(t, "offer")
			if off.TransportProtocol != "RTP/AVP" || fc.dial.NotAcceptable == nil {
				t.Fatalf("first offer %s, retry hook %v", off.TransportProtocol, fc.dial.NotAcceptable != nil)
			}
			sdp := fc.dial.NotAcceptable(context.Background(), 488)
			if policy != rtpengine.PolicyAuto {
				if sdp != nil {
					t.Fatalf("retried under %s: %q", policy, sdp)
				}
				fc.end(sipgw.Event{Kind: sipgw.EventEnded, End: sipgw.EndRejected, Code: 488})
				if f := a.expect(t, protocol.TypeError, protocol.ActionStart); f.Header.ErrorCode != 488 {
					t.Fatalf("start's error %d, want 488", f.Header.ErrorCode)
				}
				eng.expect(t, "delete")
				eng.idle(t, e)
				return
			}
			ro := eng.expect(t, "offer")
			if ro.CallID != off.CallID || ro.FromTag != off.FromTag || ro.SDP != webOffer || ro.TransportProtocol != "RTP/SAVP" || len(ro.SDES) != 0 || ro.ICE != "remove" {
				t.Fatalf("retry's offer to rtpengine %+v", ro)
			}
			if string(sdp) != relayed(webOffer) {
				t.Fatalf("second INVITE's SDP %q, want rtpengine's", sdp)
			}
			if got := e.h.sdesRetries.Load(); got != 1 {
				t.Fatalf("%d SDES retries counted", got)
			}
			fc.push(sipgw.Event{Kind: sipgw.EventAnswered, Code: 200, SDP: []byte(sipAnswer), ToTag: "t"})
			eng.expect(t, "answer")
			answeredThenHangUp(t, e, eng, a, fc, sipAnswer)
		})
	}
}
