package interop

import (
	"strconv"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// BenchmarkMediaCallSetups compares call setups from the Go client to a
// SIPp UAS through Kamailio with and without the media anchored in
// rtpengine (an offer before the INVITE, an answer after the 200, a
// delete after the BYE), in the same run, each call offering a real
// Chrome SDP: as fast as they go (10 in flight), then at 100 setups/s
// for the latency. Run with a fixed count, e.g.:
//
//	go test -run '^$' -bench MediaCallSetups -benchtime 1000x ./test/interop/
func BenchmarkMediaCallSetups(b *testing.B) {
	k := startKamailioWorkers(b, 2)
	// 10 calls in flight, each deleted after its BYE: room for 40.
	_, addr := startRTPEnginePorts(b, 320)
	chrome := chromeSDP(b, "chrome_offer.sdp")
	media := func(c *gateway.Config) {
		c.Media = rtpengine.Config{RTPEngine: []string{addr}, Policy: rtpengine.PolicyAlways}
	}
	res := map[string]setupResult{}
	run := func(name string, f func(*testing.B) setupResult) {
		b.Run(name, func(b *testing.B) { res[name] = f(b) })
	}
	run("plain", func(b *testing.B) setupResult { return benchGateway(b, k, false, 0, benchConcurrency, chrome) })
	run("rtpengine", func(b *testing.B) setupResult { return benchGateway(b, k, false, 0, benchConcurrency, chrome, media) })
	run("plain-100cps", func(b *testing.B) setupResult { return benchGateway(b, k, false, 100, benchConcurrency, chrome) })
	run("rtpengine-100cps", func(b *testing.B) setupResult {
		return benchGateway(b, k, false, 100, benchConcurrency, chrome, media)
	})
	if p, m := res["plain"], res["rtpengine"]; p.rate > 0 && m.rate > 0 {
		b.Logf("rtpengine / plain: %.2f (%.0f / %.0f setups/s)", m.rate/p.rate, m.rate, p.rate)
	}
	if p, m := res["plain-100cps"], res["rtpengine-100cps"]; p.rate > 0 && m.rate > 0 {
		b.Logf("added by rtpengine at 100 setups/s: p50 %.2f ms, p99 %.2f ms", m.p50-p.p50, m.p99-p.p99)
	}
}

// BenchmarkRTPEngineCommands times each ng command of one anchored call
// as the gateway sends them (offer of a Chrome SDP toward a phone, the
// phone's answer, delete) against a real rtpengine, one call at a time:
// the round trip each adds to a call's setup or end. Run e.g.:
//
//	go test -run '^$' -bench RTPEngineCommands -benchtime 2000x ./test/interop/
func BenchmarkRTPEngineCommands(b *testing.B) {
	c, _ := startRTPEngineAt(b)
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAlways)
	if err != nil {
		b.Fatal(err)
	}
	chrome := chromeSDP(b, "chrome_offer.sdp")
	var offers, answers, deletes []time.Duration
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		keys := rtpengine.Keys{CallID: "bench-" + strconv.Itoa(i), FromTag: "f" + strconv.Itoa(i)}
		t0 := time.Now()
		s, _, err := a.Offer(ctx, rtpengine.WebToSIP, keys, chrome)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := s.Answer(ctx, "t"+strconv.Itoa(i), phoneAnswer); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := s.Delete(ctx); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		offers, answers, deletes = append(offers, t1.Sub(t0)), append(answers, t2.Sub(t1)), append(deletes, t3.Sub(t2))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"offer", offers}, {"answer", answers}, {"delete", deletes}} {
		b.ReportMetric(quantileMs(m.d, 0.50), m.name+"-p50-ms")
		b.ReportMetric(quantileMs(m.d, 0.99), m.name+"-p99-ms")
	}
}
