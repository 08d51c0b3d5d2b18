package call

import "github.com/prometheus/client_golang/prometheus"

// queuedOp names what a peer asked of a SIP call that waits in the call's
// operation queue, for the count of those refused when it was full.
type queuedOp uint8

const (
	opReoffer queuedOp = iota
	opTransfer
	opPrack
	opDTMF
	opProgress
	opTrickle
	numQueuedOps
)

var queuedOpNames = [numQueuedOps]string{"reoffer", "transfer", "prack", "dtmf", "progress", "trickle"}

var refusedDesc = prometheus.NewDesc("jsonrtc_call_sip_refused_total",
	"Web requests on a SIP call refused with 503 because too much waited toward SIP (the call's operation queue, or for trickle its pending candidates), by operation.",
	[]string{"op"}, nil)

var mediaFailedDesc = prometheus.NewDesc("jsonrtc_call_media_failed_total",
	"rtpengine commands of SIP calls that failed (no answer, or an error): the call was refused or ended with 503, or a delete was left to rtpengine's timeout.",
	nil, nil)

// Collector returns a Prometheus collector of h's counters
// (jsonrtc_call_sip_refused_total{op}, jsonrtc_call_media_failed_total). Register it once, e.g.
// reg.MustRegister(h.Collector()).
func (h *Handler) Collector() prometheus.Collector { return collector{h} }

type collector struct{ h *Handler }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- refusedDesc; ch <- mediaFailedDesc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for op, name := range queuedOpNames {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue,
			float64(c.h.refused[op].Load()), name)
	}
	ch <- prometheus.MustNewConstMetric(mediaFailedDesc, prometheus.CounterValue, float64(c.h.mediaFailed.Load()))
}
