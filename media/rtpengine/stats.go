package rtpengine

// Side names a leg of a call as rtpengine sees it.
type Side string

const (
	SideWeb Side = "web" // the browser's leg
	SideSIP Side = "sip" // the phone's leg
)

// LegStats is what rtpengine counted on one leg of a call over its life:
// the RTP packets and bytes it received from the leg, and errors, the
// packets it could not relay toward the leg (a browser that never
// completed DTLS, failed encryption; TestRTPEngineQuality). rtpengine 10.5 reports loss, jitter
// and MOS per SSRC only from RTCP report blocks it can match (its
// "SSRC" dictionary, empty for plain RTP without them), so none are
// given here.
type LegStats struct {
	Side                   Side
	Tag                    string
	Packets, Bytes, Errors uint64
}

// legStats reads the per-leg RTP figures of a query or delete answer
// ("tags": tag: "medias": [ "streams": [ "flags", "stats" ] ]): each
// leg's RTP streams summed, RTCP left out. web is the tag of the
// browser's leg.
func legStats(raw map[string]any, web string) []LegStats {
	tags, _ := raw["tags"].(map[string]any)
	var out []LegStats
	for tag, v := range tags {
		m, _ := v.(map[string]any)
		medias, _ := m["medias"].([]any)
		ls := LegStats{Side: SideSIP, Tag: tag}
		if tag == web {
			ls.Side = SideWeb
		}
		for _, md := range medias {
			md, _ := md.(map[string]any)
			streams, _ := md["streams"].([]any)
			for _, st := range streams {
				st, _ := st.(map[string]any)
				if !hasFlag(st["flags"], "RTP") {
					continue
				}
				s, _ := st["stats"].(map[string]any)
				ls.Packets += count(s["packets"])
				ls.Bytes += count(s["bytes"])
				ls.Errors += count(s["errors"])
			}
		}
		out = append(out, ls)
	}
	return out
}

func hasFlag(v any, f string) bool {
	l, _ := v.([]any)
	for _, x := range l {
		if x == f {
			return true
		}
	}
	return false
}

func count(v any) uint64 {
	if n, ok := v.(int64); ok && n > 0 {
		return uint64(n)
	}
	return 0
}
