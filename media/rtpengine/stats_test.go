package rtpengine

import (
	"reflect"
	"testing"
	"time"
)

// TestDeleteLegStats: Delete returns the delete answer's figures per leg,
// the browser's first: its tag is the caller's From-tag when it called,
// the answer's To-tag when SIP called it; RTCP streams are left out. A
// leg whose RTP stream's SSRC has an "average MOS" in the answer's SSRC
// dictionary (shaped as rtpengine 10.5 wrote it for a browser and
// baresip, sdk/js/e2e media.test.mjs) gets its quality; the other none.
func TestDeleteLegStats(t *testing.T) {
	figures := answerFigures("delete")
	q := &Quality{MOS: 4.3, Jitter: 8 * time.Millisecond, Loss: 1, CumulativeLoss: 3, RTT: 2330 * time.Microsecond}
	for _, tc := range []struct {
		dir  Direction
		want []LegStats
	}{
		{WebToSIP, []LegStats{{SideWeb, "from", 10, 1000, 1, q, time.Time{}}, {SideSIP, "to", 20, 2000, 1, nil, time.Time{}}}},
		{SIPToWeb, []LegStats{{SideWeb, "to", 20, 2000, 1, nil, time.Time{}}, {SideSIP, "from", 10, 1000, 1, q, time.Time{}}}},
	} {
		a, _ := NewAdapter(dialFake(t, newFakeNG(t, figures), nil), PolicyAlways)
		s, _, err := a.Offer(t.Context(), tc.dir, Keys{CallID: "c", FromTag: "from"}, plainSDP)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Answer(t.Context(), "to", "answer"); err != nil {
			t.Fatal(err)
		}
		legs, err := s.Delete(t.Context())
		if err != nil || !reflect.DeepEqual(legs, tc.want) {
			t.Errorf("%v: legs %+v %v, want %+v", tc.dir, legs, err, tc.want)
		}
	}
}

// answerFigures answers cmd with figures per leg, as rtpengine 10.5 does
// (tags "from" with 10 RTP packets and "to" with 20, an average MOS for
// the SSRC 10), and every other command ok.
func answerFigures(cmd string) func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
	stream := func(flag string, packets int64) map[string]any {
		return map[string]any{"flags": []any{flag}, "SSRC": packets, "stats": map[string]any{"packets": packets, "bytes": packets * 100, "errors": int64(1)}}
	}
	return func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		if req["command"] != cmd {
			return ok(f, c, req, n)
		}
		leg := func(p int64) map[string]any {
			return map[string]any{"medias": []any{map[string]any{"streams": []any{stream("RTP", p), stream("RTCP", 7)}}}}
		}
		return map[string]any{"result": "ok", "tags": map[string]any{"from": leg(10), "to": leg(20)},
			"SSRC": map[string]any{
				"10": map[string]any{"cumulative loss": int64(3), "average MOS": map[string]any{"MOS": int64(43), "round-trip time": int64(2330), "round-trip time leg": int64(1346), "jitter": int64(8), "packet loss": int64(1), "samples": int64(2)}},
				"20": map[string]any{"cumulative loss": int64(0), "average MOS": map[string]any{"MOS": int64(0), "jitter": int64(13)}},
			}}
	}
}
