package connlimit

import "github.com/prometheus/client_golang/prometheus"

var (
	refusedDesc = prometheus.NewDesc("jsonrtc_http_connections_refused_total",
		"Connections closed at accept because a cap was reached, by reason (total, address).",
		[]string{"reason"}, nil)
	openDesc = prometheus.NewDesc("jsonrtc_http_connections_open",
		"Connections of the public listener open now.", nil, nil)
	maxDesc = prometheus.NewDesc("jsonrtc_http_connections_max",
		"The cap on open connections of the public listener (0: none).", nil, nil)
)

// Collector returns a Prometheus collector of l's refusals
// (jsonrtc_http_connections_refused_total{reason}), open connections and
// cap. It reads the counters only when scraped.
func (l *Listener) Collector() prometheus.Collector { return collector{l} }

type collector struct{ l *Listener }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- refusedDesc
	ch <- openDesc
	ch <- maxDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for r := range numReasons {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.l.Refused(r)), r.String())
	}
	ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(c.l.Open()))
	ch <- prometheus.MustNewConstMetric(maxDesc, prometheus.GaugeValue, float64(max(c.l.max, 0)))
}
