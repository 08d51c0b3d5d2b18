package gateway

import (
	"net/http"

	"github.com/jsonrtc/jsonrtc/cluster"
	"github.com/jsonrtc/jsonrtc/transport/longpoll"
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
	// frames counts the frames processed by the transport of the
	// connection they came on (transportWebSocket, transportLongPoll).
	frames    *prometheus.CounterVec
	badFrames prometheus.Counter
	// attached is the sessions whose connection is up, by its transport
	// (the others wait for a resume).
	attached *prometheus.GaugeVec
	// refused counts destinations refused by the target policy, by field
	// (target, refer_to, header): the sign of a guest probing for toll
	// fraud.
	refused *prometheus.CounterVec
	// storeWrites counts session record writes by outcome (ok, error,
	// conflict): an error sends the frames unstored (persist.go).
	storeWrites *prometheus.CounterVec
	// pushes counts the pushes that woke sessions in standby, by channel
	// (webpush, webhook) and outcome (ok, gone, error).
	pushes *prometheus.CounterVec
	// routed counts routing decisions by kind, rule and action
	// (route.go): which rules carry the traffic, and how much is refused.
	routed *prometheus.CounterVec
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
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_frames_in_total", Help: "Frames received and processed, by transport."}, []string{"transport"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_pushes_total", Help: "Pushes sent to wake sessions in standby, by channel and outcome."}, []string{"channel", "outcome"}),
		attached: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jsonrtc_sessions_attached", Help: "Sessions with a connection up, by its transport (websocket, longpoll)."}, []string{"transport"}),
		badFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jsonrtc_bad_frames_total", Help: "Frames that could not be decoded."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_destinations_refused_total", Help: "Destinations in client frames refused by the target policy, by field."}, []string{"field"}),
		storeWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_store_writes_total", Help: "Session record writes, by outcome."}, []string{"outcome"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_routing_decisions_total", Help: "Calls, messages and subscriptions routed, by kind, deciding rule and action."},
			[]string{"kind", "rule", "action"}),

		cluster: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_cluster_requests_total", Help: "Requests between cluster nodes (deliver, inbound, ended, takeover, confirm, ping) and what became of frames and reports across them (held, taken, waiting, dead_session, host_down, relay, report, drain, resume_wait), by outcome."}, []string{"kind", "outcome"}),
	}
	m.reg.MustRegister(m.sessions, m.handshakes, m.resumes, m.ended, m.closes, m.frames, m.badFrames, m.attached, m.pushes, m.refused, m.storeWrites, m.routed, m.cluster,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// The transport label of a connection.
const (
	transportWebSocket = "websocket"
	transportLongPoll  = "longpoll"
)

// transportOf names c's transport for the metrics.
func transportOf(c conn) string {
	if _, ok := c.(*longpoll.Conn); ok {
		return transportLongPoll
	}
	return transportWebSocket
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// trunkCollector reports the health of every trunk's proxies as the SIP
// side sees it at each scrape: jsonrtc_sip_trunk_proxy_up.
type trunkCollector struct {
	g  *Gateway
	up *prometheus.Desc
}

func newTrunkCollector(g *Gateway) trunkCollector {
	return trunkCollector{g: g, up: prometheus.NewDesc("jsonrtc_sip_trunk_proxy_up",
		"1 while a routing trunk's proxy is taken as up (answers its OPTIONS health checks), 0 while it is skipped.",
		[]string{"trunk", "proxy"}, nil)}
}

func (c trunkCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up }

func (c trunkCollector) Collect(ch chan<- prometheus.Metric) {
	for name := range c.g.router.Load().Trunks() {
		for _, p := range c.g.TrunkStatus(name) {
			v := 0.0
			if p.Up {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, v, name, p.URI)
		}
	}
}

// clusterCollector reports, at each scrape, this node's view of the
// cluster (cluster.Node.Status, what /cluster/status serves): each
// node's lease, up or not, and the directory's sessions at each node.
// A node whose directory count stays high after it died still has
// sessions to resume elsewhere; one whose count drops to 0 while it
// is up took none (a load balancer's health check failing?).
type clusterCollector struct {
	node     *cluster.Node
	up       *prometheus.Desc
	sessions *prometheus.Desc
	via      *prometheus.Desc
}

func newClusterCollector(n *cluster.Node) clusterCollector {
	return clusterCollector{node: n,
		up: prometheus.NewDesc("jsonrtc_cluster_node_up",
			"1 while a node of the cluster is taken as up by this one (its lease live; for this node: its last lease write succeeded), 0 once taken for down.",
			[]string{"node"}, nil),
		sessions: prometheus.NewDesc("jsonrtc_cluster_directory_sessions",
			"Sessions the directory names at each node, in this node's view of it (a dead node's until they resume elsewhere or expire).",
			[]string{"node"}, nil),
		via: prometheus.NewDesc("jsonrtc_cluster_requests_via_total",
			"Requests between nodes that went through a third node, the link between the two cut: sent (by this node, answered) and relayed (for its peers).",
			[]string{"way"}, nil)}
}

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.sessions
	ch <- c.via
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.node.Status().Nodes {
		up := 0.0
		if n.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, n.Name)
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(n.Sessions), n.Name)
	}
	sent, relayed := c.node.Relayed()
	ch <- prometheus.MustNewConstMetric(c.via, prometheus.CounterValue, float64(sent), "sent")
	ch <- prometheus.MustNewConstMetric(c.via, prometheus.CounterValue, float64(relayed), "relayed")
}
