package gateway

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// The handlers' counters are on the metrics listener with the gateway's own.
func TestMetricsExposeHandlerCounters(t *testing.T) {
	g, _ := newGateway(t, nil)
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, name := range []string{"jsonrtc_sessions", "jsonrtc_limits_tracked_keys", `jsonrtc_call_sip_refused_total{op="dtmf"}`} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
}
