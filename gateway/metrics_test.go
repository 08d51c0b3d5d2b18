package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/protocol"
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

// TestMetricsByTransport: frames and attached sessions are counted by the
// transport of their connection, and a session that moves follows.
func TestMetricsByTransport(t *testing.T) {
	g, url := newGateway(t, nil)
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	p := &poller{t: t, url: pollURL(url)}
	p.connect("bob@example.com")
	p.send(message("alice@example.com", "over long-poll"))
	if f := a.read(); f.Header.Action != protocol.ActionSend {
		t.Fatalf("alice got %s", f.Marshal())
	}
	a.send(message("bob@example.com", "over websocket"))
	a.send(message("bob@example.com", "again"))
	for range 2 {
		if f := p.read(); f.Header.Action != protocol.ActionSend {
			t.Fatalf("bob got %s", f.Marshal())
		}
	}
	m := scrape(t, g)
	for _, want := range []string{
		`jsonrtc_sessions_attached{transport="websocket"} 1`,
		`jsonrtc_sessions_attached{transport="longpoll"} 1`,
		`jsonrtc_frames_in_total{transport="websocket"} 2`,
		`jsonrtc_frames_in_total{transport="longpoll"} 1`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics has no %s", want)
		}
	}
	// Bob logs out: his long-poll connection no longer counts.
	s := g.lookup(p.sid)
	if resp := p.do(http.MethodDelete, ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	select {
	case <-s.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("logout did not end the session")
	}
	if m := scrape(t, g); !strings.Contains(m, `jsonrtc_sessions_attached{transport="longpoll"} 0`+"\n") {
		t.Errorf("long-poll session still counted attached after its logout")
	}
}

func scrape(t *testing.T, g *Gateway) string {
	t.Helper()
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
