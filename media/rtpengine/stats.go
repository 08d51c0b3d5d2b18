package rtpengine

import (
	"strconv"
	"time"
)

// Side names a leg of a call as rtpengine sees it.
type Side string

const (
	SideWeb Side = "web" // the browser's leg
	SideSIP Side = "sip" // the phone's leg
)

// LegStats is what rtpengine counted on one leg of a call over its life:
// the RTP packets and bytes it received from the leg, and errors, the
// packets it could not relay toward the leg (a browser that never
// completed DTLS, failed encryption; TestRTPEngineQuality), and the
// quality of the media the leg sent, when rtpengine has it.
type LegStats struct {
	Side                   Side
	Tag                    string
	Packets, Bytes, Errors uint64
	// Quality is rtpengine's verdict on the media the leg sent, from
	// the RTCP report blocks of its receiver (the "SSRC" dictionary,
	// keyed by the SSRC of the leg's RTP stream); nil when there is
	// none. rtpengine 10.5 reads RTCP only where it rewrites it: a
	// call with a browser that did DTLS-SRTP has it after the first
	// reports (about 5 s, docs/media.md), two plain-RTP legs never do.
	Quality *Quality
	// At is when a periodic query took the figures: set on the last
	// known figures of a call whose instance was lost
	// (Session.LastFigures); zero on a delete's, which are final.
	At time.Time
}

// Quality is rtpengine's "average MOS" of one SSRC.
type Quality struct {
	MOS            float64       // mean opinion score, 1 to 5 (rtpengine reports tenths)
	Jitter         time.Duration // average interarrival jitter
	Loss           float64       // average packet loss, percent
	CumulativeLoss uint64        // packets lost over the call
	RTT            time.Duration // average round-trip time
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
		var ssrc any
		for _, md := range medias {
			md, _ := md.(map[string]any)
			streams, _ := md["streams"].([]any)
			for _, st := range streams {
				st, _ := st.(map[string]any)
				if !hasFlag(st["flags"], "RTP") {
					continue
				}
				if ssrc == nil {
					ssrc = st["SSRC"]
				}
				s, _ := st["stats"].(map[string]any)
				ls.Packets += count(s["packets"])
				ls.Bytes += count(s["bytes"])
				ls.Errors += count(s["errors"])
			}
		}
		ls.Quality = quality(raw, ssrc)
		out = append(out, ls)
	}
	return out
}

// quality reads the "average MOS" of ssrc (an integer, as the streams
// carry it) in the answer's "SSRC" dictionary (keyed by its decimal
// string): MOS in tenths, jitter in ms, packet loss in percent,
// round-trip time in µs, as rtpengine writes them.
func quality(raw map[string]any, ssrc any) *Quality {
	n, ok := ssrc.(int64)
	if !ok {
		return nil
	}
	all, _ := raw["SSRC"].(map[string]any)
	e, _ := all[strconv.FormatInt(n, 10)].(map[string]any)
	avg, _ := e["average MOS"].(map[string]any)
	mos := count(avg["MOS"])
	if mos == 0 {
		// No report yet, or only the one that opens a progression.
		return nil
	}
	return &Quality{
		MOS:            float64(mos) / 10,
		Jitter:         time.Duration(count(avg["jitter"])) * time.Millisecond,
		Loss:           float64(count(avg["packet loss"])),
		CumulativeLoss: count(e["cumulative loss"]),
		RTT:            time.Duration(count(avg["round-trip time"])) * time.Microsecond,
	}
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
