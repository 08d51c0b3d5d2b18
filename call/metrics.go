package call

import (
	"github.com/jsonrtc/jsonrtc/media/rtpengine"
	"github.com/prometheus/client_golang/prometheus"
)

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
	opDeclared // a declared action's request (template.go)
	numQueuedOps
)

var queuedOpNames = [numQueuedOps]string{"reoffer", "transfer", "prack", "dtmf", "progress", "trickle", "declared"}

var refusedDesc = prometheus.NewDesc("jsonrtc_call_sip_refused_total",
	"Web requests on a SIP call refused with 503 because too much waited toward SIP (the call's operation queue, or for trickle its pending candidates), by operation.",
	[]string{"op"}, nil)

var mediaFailedDesc = prometheus.NewDesc("jsonrtc_call_media_failed_total",
	"rtpengine commands of SIP calls that failed (no answer, or an error): the call was refused or ended with 503, or a delete was left to rtpengine's timeout.",
	nil, nil)

var sdesRetriesDesc = prometheus.NewDesc("jsonrtc_call_sdes_retries_total",
	"Browsers' INVITEs sent again in SDES-SRTP after the phone refused RTP/AVP (488, 606, 415) under the auto media policy.",
	nil, nil)

// mediaQuality holds what rtpengine counted on each leg of the calls it
// anchored, observed once per leg at the call's delete (media.go).
type mediaQuality struct {
	packets, bytes, errors *prometheus.HistogramVec
	// Of the legs rtpengine had RTCP reports on (rtpengine.Quality).
	mos, jitter, loss *prometheus.HistogramVec
}

// vecs lists q's histograms, for Describe and Collect.
func (q mediaQuality) vecs() []*prometheus.HistogramVec {
	return []*prometheus.HistogramVec{q.packets, q.bytes, q.errors, q.mos, q.jitter, q.loss}
}

func newMediaQuality() mediaQuality {
	h := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{"side"})
	}
	return mediaQuality{
		packets: h("jsonrtc_media_packets",
			"RTP packets rtpengine received from a leg (side: web or sip) of an anchored SIP call over its life, from its delete answer.",
			prometheus.ExponentialBuckets(10, 4, 9)),
		bytes: h("jsonrtc_media_bytes",
			"RTP bytes rtpengine received from a leg (side: web or sip) of an anchored SIP call over its life.",
			prometheus.ExponentialBuckets(1000, 4, 10)),
		errors: h("jsonrtc_media_errors",
			"Packets rtpengine could not relay toward a leg (side: web or sip) of an anchored SIP call (no DTLS with the browser yet, failed encryption).",
			[]float64{0, 1, 10, 100, 1000}),
		mos: h("jsonrtc_media_mos",
			"rtpengine's average MOS (1 to 5) of the media a leg (side: web or sip) of an anchored SIP call sent, from its receiver's RTCP reports; legs without reports are not observed.",
			[]float64{1, 2, 3, 3.5, 4, 4.2, 4.4}),
		jitter: h("jsonrtc_media_jitter_seconds",
			"rtpengine's average interarrival jitter of the media a leg (side: web or sip) of an anchored SIP call sent, from its receiver's RTCP reports.",
			[]float64{0.001, 0.005, 0.01, 0.02, 0.05, 0.1}),
		loss: h("jsonrtc_media_loss_percent",
			"rtpengine's average packet loss (percent) of the media a leg (side: web or sip) of an anchored SIP call sent, from its receiver's RTCP reports.",
			[]float64{0, 0.5, 1, 2, 5, 10, 20}),
	}
}

// observe records the legs of one call.
func (q mediaQuality) observe(legs []rtpengine.LegStats) {
	for _, l := range legs {
		q.packets.WithLabelValues(string(l.Side)).Observe(float64(l.Packets))
		q.bytes.WithLabelValues(string(l.Side)).Observe(float64(l.Bytes))
		q.errors.WithLabelValues(string(l.Side)).Observe(float64(l.Errors))
		if l.Quality != nil {
			q.mos.WithLabelValues(string(l.Side)).Observe(l.Quality.MOS)
			q.jitter.WithLabelValues(string(l.Side)).Observe(l.Quality.Jitter.Seconds())
			q.loss.WithLabelValues(string(l.Side)).Observe(l.Quality.Loss)
		}
	}
}

// Collector returns a Prometheus collector of h's counters
// (jsonrtc_call_sip_refused_total{op}, jsonrtc_call_media_failed_total)
// and of the media figures of anchored calls (jsonrtc_media_packets,
// _bytes, _errors, _mos, _jitter_seconds, _loss_percent by side). Register it once, e.g.
// reg.MustRegister(h.Collector()).
func (h *Handler) Collector() prometheus.Collector { return collector{h} }

type collector struct{ h *Handler }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- refusedDesc
	ch <- mediaFailedDesc
	ch <- sdesRetriesDesc
	for _, v := range c.h.quality.vecs() {
		v.Describe(ch)
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for op, name := range queuedOpNames {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue,
			float64(c.h.refused[op].Load()), name)
	}
	ch <- prometheus.MustNewConstMetric(mediaFailedDesc, prometheus.CounterValue, float64(c.h.mediaFailed.Load()))
	ch <- prometheus.MustNewConstMetric(sdesRetriesDesc, prometheus.CounterValue, float64(c.h.sdesRetries.Load()))
	for _, v := range c.h.quality.vecs() {
		v.Collect(ch)
	}
}
