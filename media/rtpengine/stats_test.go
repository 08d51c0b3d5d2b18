package rtpengine

import (
	"reflect"
	"testing"
)

// TestDeleteLegStats: Delete returns the delete answer's figures per leg,
// the browser's first: its tag is the caller's From-tag when it called,
// the answer's To-tag when SIP called it; RTCP streams are left out.
func TestDeleteLegStats(t *testing.T) {
	stream := func(flag string, packets int64) map[string]any {
		return map[string]any{"flags": []any{flag}, "stats": map[string]any{"packets": packets, "bytes": packets * 100, "errors": int64(1)}}
	}
	figures := func(f *fakeNG, c string, req map[string]any, n int) map[string]any {
		if req["command"] != "delete" {
			return ok(f, c, req, n)
		}
		leg := func(p int64) map[string]any {
			return map[string]any{"medias": []any{map[string]any{"streams": []any{stream("RTP", p), stream("RTCP", 7)}}}}
		}
		return map[string]any{"result": "ok", "tags": map[string]any{"from": leg(10), "to": leg(20)}}
	}
	for _, tc := range []struct {
		dir  Direction
		want []LegStats
	}{
		{WebToSIP, []LegStats{{SideWeb, "from", 10, 1000, 1}, {SideSIP, "to", 20, 2000, 1}}},
		{SIPToWeb, []LegStats{{SideWeb, "to", 20, 2000, 1}, {SideSIP, "from", 10, 1000, 1}}},
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
