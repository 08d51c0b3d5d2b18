package limits

import "github.com/prometheus/client_golang/prometheus"

var (
	deniedDesc = prometheus.NewDesc("jsonrtc_limits_denied_total",
		"Requests refused by a rate limit or quota, by reason (the limit) and scope.",
		[]string{"reason", "scope"}, nil)
	keysDesc = prometheus.NewDesc("jsonrtc_limits_tracked_keys",
		"Addresses, applications and identities the limiter tracks.", nil, nil)
)

// Collector returns a Prometheus collector of l's denial counters
// (jsonrtc_limits_denied_total{reason,scope}) and tracked keys
// (jsonrtc_limits_tracked_keys). Register it once, e.g.
// reg.MustRegister(l.Collector()). Counting costs the hot path one atomic
// add; the collector reads the counters only when scraped.
func (l *Limiter) Collector() prometheus.Collector { return collector{l} }

type collector struct{ l *Limiter }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- deniedDesc
	ch <- keysDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.l.Denials() {
		ch <- prometheus.MustNewConstMetric(deniedDesc, prometheus.CounterValue, float64(d.Count),
			d.Limit.String(), d.Scope.String())
	}
	ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(c.l.Keys()))
}
