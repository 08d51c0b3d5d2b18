package gateway

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// TestRTPEngineMetrics: with media.rtpengine set, the ng client's
// counters are served; an rtpengine that never answers shows as
// retransmissions and a timeout (the start-up ping).
func TestRTPEngineMetrics(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // takes datagrams, answers none
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	cfg := DefaultConfig()
	cfg.SIP.Listen.UDP, cfg.SIP.Domain = "127.0.0.1:0", "example.com"
	cfg.Media = rtpengine.Config{RTPEngine: []string{dead.LocalAddr().String()}, Timeout: 300 * time.Millisecond, Retransmit: 100 * time.Millisecond}
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, "jsonrtc_rtpengine_timeouts_total 1") || !strings.Contains(body, "jsonrtc_rtpengine_stray_total 0") ||
		!strings.Contains(body, "jsonrtc_call_media_failed_total 0") || strings.Contains(body, "jsonrtc_rtpengine_retransmits_total 0") {
		t.Fatalf("metrics:\n%s", grepLines(body, "rtpengine", "media"))
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
