package gateway

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"go.uber.org/goleak"
)

// TestRTPEngineMetrics: with media.rtpengine set, each instance's ng
// counters, health and calls are served under its address; an rtpengine
// that never answers shows as down, with retransmissions and a timeout
// (the pool's first ping), one that answers as up.
func TestRTPEngineMetrics(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // takes datagrams, answers none
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	cfg := DefaultConfig()
	cfg.SIP.Listen.UDP, cfg.SIP.Domain = "127.0.0.1:0", "example.com"
	la, _ := fakeNG(t)
	da := dead.LocalAddr().String()
	cfg.Media = rtpengine.Config{RTPEngine: []string{da, la}, Timeout: 300 * time.Millisecond, Retransmit: 100 * time.Millisecond, PingInterval: time.Hour}
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`jsonrtc_rtpengine_timeouts_total{instance="` + da + `"} 1`,
		`jsonrtc_rtpengine_stray_total{instance="` + da + `"} 0`,
		`jsonrtc_rtpengine_up{instance="` + da + `"} 0`,
		`jsonrtc_rtpengine_calls{instance="` + da + `"} 0`,
		`jsonrtc_rtpengine_timeouts_total{instance="` + la + `"} 0`,
		`jsonrtc_rtpengine_up{instance="` + la + `"} 1`,
		"jsonrtc_call_media_failed_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("no %s in the metrics:\n%s", want, grepLines(body, "rtpengine", "media"))
		}
	}
	if strings.Contains(body, `jsonrtc_rtpengine_retransmits_total{instance="`+da+`"} 0`) {
		t.Fatalf("no retransmissions to the silent instance:\n%s", grepLines(body, "rtpengine"))
	}
}

func grepLines(s string, subs ...string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestRTPEngineSIPStartFails: a gateway whose SIP side cannot start
// (its UDP port taken) stops its rtpengine pool's pings and closes its
// ng clients before New returns the error: nothing is left running.
func TestRTPEngineSIPStartFails(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	live, _ := fakeNG(t)
	cfg := DefaultConfig()
	cfg.SIP.Listen.UDP, cfg.SIP.Domain = taken.LocalAddr().String(), "example.com"
	cfg.Media = rtpengine.Config{RTPEngine: []string{live}, PingInterval: time.Millisecond}
	before := goleak.IgnoreCurrent() // the fake rtpengine, and the test's own
	if _, err := New(cfg, nil); err == nil {
		t.Fatal("New with the SIP port taken succeeded")
	}
	goleak.VerifyNone(t, before)
}
