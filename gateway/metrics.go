package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are per gateway, in a registry of their own, so that several
// gateways (tests) can live in one process.
type metrics struct {
	reg        *prometheus.Registry
	sessions   prometheus.Gauge
	handshakes *prometheus.CounterVec
	resumes    *prometheus.CounterVec
	ended      *prometheus.CounterVec
	closes     *prometheus.CounterVec
	frames     prometheus.Counter
	badFrames  prometheus.Counter
	// refused counts destinations refused by the target policy, by field
	// (target, refer_to, header): the sign of a guest probing for toll
	// fraud.
	refused *prometheus.CounterVec
	// storeWrites counts session record writes by outcome (ok, error,
	// conflict): an error sends the frames unstored (persist.go).
	storeWrites *prometheus.CounterVec
	// cluster counts requests between nodes by kind and outcome, and
	// takeovers (cluster.go).
	cluster *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jsonrtc_sessions", Help: "Live sessions, connected or waiting for a resume."}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_handshakes_total", Help: "WebSocket handshakes by outcome."}, []string{"outcome"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_resumes_total", Help: "Resume attempts by outcome."}, []string{"outcome"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_sessions_ended_total", Help: "Sessions ended, by reason."}, []string{"reason"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_socket_drops_total", Help: "Sockets the gateway dropped, by reason."}, []string{"reason"}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jsonrtc_frames_in_total", Help: "Frames received and processed."}),
		badFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jsonrtc_bad_frames_total", Help: "Frames that could not be decoded."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_destinations_refused_total", Help: "Destinations in client frames refused by the target policy, by field."}, []string{"field"}),
		storeWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_store_writes_total", Help: "Session record writes, by outcome."}, []string{"outcome"}),
		cluster: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_cluster_requests_total", Help: "Requests between cluster nodes (deliver, inbound, ended, takeover), by outcome."}, []string{"kind", "outcome"}),
	}
	m.reg.MustRegister(m.sessions, m.handshakes, m.resumes, m.ended, m.closes, m.frames, m.badFrames, m.refused, m.storeWrites, m.cluster,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
