package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/jsonrtc/jsonrtc/store"
	"github.com/prometheus/client_golang/prometheus"
)

// The store's own metrics (docs/cluster.md "Operations"): every request
// the gateway makes of it, session records, call records and the media
// ledger alike, timed and counted by operation and outcome, with the
// bytes it was given to write. jsonrtc_store_writes_total counts session
// record writes as the writer sees them (a retried write, a batch that
// fell back); these count what the store was asked, and how it answered.

// storeMetrics are the series of a metered store.
type storeMetrics struct {
	seconds  *prometheus.HistogramVec
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

func newStoreMetrics() storeMetrics {
	return storeMetrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jsonrtc_store_request_seconds",
			Help: "Time the store took to answer a request, by operation (create, update, batch, get, delete, keys, len).",
			// From a memory store's microseconds to a replicated
			// bucket's leader election (seconds).
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_store_requests_total",
			Help: "Requests made of the store, by operation and outcome (ok, conflict, not_found, too_large, no_batch, timeout, error).",
		}, []string{"op", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jsonrtc_store_written_bytes_total",
			Help: "Bytes of record values sent to the store to write, by operation (create, update, batch): a value refused as too large, or a batch the store makes none of, left out.",
		}, []string{"op"}),
	}
}

func (m storeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.seconds, m.requests, m.bytes}
}

// storeOutcome names err for jsonrtc_store_requests_total.
func storeOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, store.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrTooLarge):
		return "too_large"
	case errors.Is(err, store.ErrNoBatch):
		return "no_batch"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	}
	return "error"
}

// meteredStore is a store.Store whose requests are measured.
type meteredStore struct {
	s store.Store
	m storeMetrics
}

// meteredBatcher is a meteredStore over a store.Batcher: the gateway
// tells a store that batches by its type.
type meteredBatcher struct {
	meteredStore
	b store.Batcher
}

// metered wraps s; a store.Batcher stays one.
func metered(s store.Store, m storeMetrics) store.Store {
	ms := meteredStore{s: s, m: m}
	if b, ok := s.(store.Batcher); ok {
		return meteredBatcher{meteredStore: ms, b: b}
	}
	return ms
}

func (s meteredStore) done(op string, start time.Time, err error) {
	s.m.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	s.m.requests.WithLabelValues(op, storeOutcome(err)).Inc()
}

// wrote counts the bytes of a write the store took up (a value refused
// as too large, or a batch the store does not make, went nowhere).
func (s meteredStore) wrote(op string, n int, err error) {
	if !errors.Is(err, store.ErrTooLarge) && !errors.Is(err, store.ErrNoBatch) {
		s.m.bytes.WithLabelValues(op).Add(float64(n))
	}
}

func (s meteredStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	t := time.Now()
	rev, err := s.s.Create(ctx, key, value)
	s.done("create", t, err)
	s.wrote("create", len(value), err)
	return rev, err
}

func (s meteredStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	t := time.Now()
	n, err := s.s.Update(ctx, key, value, rev)
	s.done("update", t, err)
	s.wrote("update", len(value), err)
	return n, err
}

func (s meteredStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	t := time.Now()
	v, rev, err := s.s.Get(ctx, key)
	s.done("get", t, err)
	return v, rev, err
}

func (s meteredStore) Delete(ctx context.Context, key string) error {
	t := time.Now()
	err := s.s.Delete(ctx, key)
	s.done("delete", t, err)
	return err
}

func (s meteredStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	t := time.Now()
	ks, err := s.s.Keys(ctx, prefix)
	s.done("keys", t, err)
	return ks, err
}

func (s meteredStore) Len(ctx context.Context) (int, error) {
	t := time.Now()
	n, err := s.s.Len(ctx)
	s.done("len", t, err)
	return n, err
}

func (s meteredBatcher) WriteBatch(ctx context.Context, ws []store.Write) ([]uint64, error) {
	n := 0
	for _, w := range ws {
		n += len(w.Value)
	}
	t := time.Now()
	revs, err := s.b.WriteBatch(ctx, ws)
	s.done("batch", t, err)
	s.wrote("batch", n, err)
	return revs, err
}

// sizeCollector reports how much the store holds at each scrape
// (store.Sizer): with JetStream one request to the bucket's leader,
// bounded by sizeTimeout; a store that does not answer in time leaves
// the two series out of that scrape.
type sizeCollector struct {
	s              store.Sizer
	records, bytes *prometheus.Desc
}

const sizeTimeout = time.Second

func newSizeCollector(s store.Sizer) sizeCollector {
	return sizeCollector{s: s,
		records: prometheus.NewDesc("jsonrtc_store_records", "Messages the store holds for the records (with a replicated bucket: on each replica; purge markers until they age out).", nil, nil),
		bytes:   prometheus.NewDesc("jsonrtc_store_bytes", "Bytes the store holds for the records (with a replicated bucket: on each replica).", nil, nil),
	}
}

func (c sizeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.records; ch <- c.bytes }

func (c sizeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), sizeTimeout)
	defer cancel()
	n, b, err := c.s.Size(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(b))
}
