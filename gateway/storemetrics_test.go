package gateway

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"testing"

	"github.com/jsonrtc/jsonrtc/protocol"
	"github.com/jsonrtc/jsonrtc/store"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue is c's value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// updateFailing answers every Update with err.
type updateFailing struct {
	*store.Memory
	err error
}

func (s updateFailing) Update(context.Context, string, []byte, uint64) (uint64, error) {
	return 0, s.err
}

// TestStoreMetricsByOutcome: each request is counted by its operation
// and the store's answer, and only the bytes the store took are counted
// as written.
func TestStoreMetricsByOutcome(t *testing.T) {
	ctx := context.Background()
	m := newStoreMetrics()
	st := metered(updateFailing{Memory: store.NewMemory(), err: store.ErrConflict}, m)
	if _, ok := st.(store.Batcher); !ok {
		t.Fatal("a store that batches is metered as one that does not")
	}
	if _, ok := metered(struct{ store.Store }{store.NewMemory()}, m).(store.Batcher); ok {
		t.Fatal("a store that does not batch is metered as one that does")
	}
	if _, err := st.Create(ctx, "k", []byte("12345")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, "k", []byte("123")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := st.Update(ctx, "k", []byte("1234567"), 1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update: %v", err)
	}
	if _, _, err := st.Get(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get: %v", err)
	}
	tooLarge := metered(updateFailing{Memory: store.NewMemory(), err: store.ErrTooLarge}, m)
	tooLarge.Update(ctx, "k", []byte("big"), 1)
	timedOut := metered(updateFailing{Memory: store.NewMemory(), err: context.DeadlineExceeded}, m)
	timedOut.Update(ctx, "k", []byte("1"), 1)
	for _, c := range []struct {
		op, outcome string
		want        float64
	}{
		{"create", "ok", 1}, {"create", "conflict", 1}, {"update", "conflict", 1},
		{"get", "not_found", 1}, {"update", "too_large", 1}, {"update", "timeout", 1},
	} {
		if got := counterValue(m.requests.WithLabelValues(c.op, c.outcome)); got != c.want {
			t.Errorf("requests{op=%s,outcome=%s} = %v, want %v", c.op, c.outcome, got, c.want)
		}
	}
	// Both creates were sent (the second met a conflict), the refused
	// update too; the value too large was not taken.
	if got := counterValue(m.bytes.WithLabelValues("create")); got != 8 {
		t.Errorf("create bytes = %v, want 8", got)
	}
	if got := counterValue(m.bytes.WithLabelValues("update")); got != 8 {
		t.Errorf("update bytes = %v, want 8 (7 refused as a conflict, 1 timed out, 3 too large left out)", got)
	}
	ch := make(chan prometheus.Metric, 16)
	m.seconds.Collect(ch)
	close(ch)
	if n := len(ch); n != 3 {
		t.Errorf("latency histograms: %d ops, want 3 (create, update, get)", n)
	}
}

// TestStoreMetricsOfAGateway: a session's record writes reach the store's
// metrics on /metrics, with what the store holds.
func TestStoreMetricsOfAGateway(t *testing.T) {
	st := store.NewMemory()
	g, url := newGatewayOpts(t, nil, Options{Store: st})
	a := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	a.connect("alice@example.com")
	b := dial(t, url, protocol.SubprotocolJSONrtc, nil)
	b.connect("bob@example.com")
	a.send(message("bob@example.com", "hello"))
	if f := b.read(); f.Header.Action != protocol.ActionSend {
		t.Fatalf("bob got %s", f.Marshal())
	}
	m := scrape(t, g)
	sum := func(re string) float64 {
		total := 0.0
		for _, v := range regexp.MustCompile(re).FindAllStringSubmatch(m, -1) {
			f, _ := strconv.ParseFloat(v[1], 64)
			total += f
		}
		return total
	}
	if n := sum(`(?m)^jsonrtc_store_requests_total\{op="(?:create|update|batch)",outcome="ok"\} (\S+)$`); n < 2 {
		t.Errorf("store writes counted ok: %v, want at least the two sessions' records", n)
	}
	if n := sum(`(?m)^jsonrtc_store_request_seconds_count\{op="(?:create|update|batch)"\} (\S+)$`); n < 2 {
		t.Errorf("store write latencies observed: %v, want at least 2", n)
	}
	if n := sum(`(?m)^jsonrtc_store_written_bytes_total\{op="\w+"\} (\S+)$`); n < 100 {
		t.Errorf("bytes written: %v", n)
	}
	records, _ := st.Len(context.Background())
	if n := sum(`(?m)^jsonrtc_store_records (\S+)$`); int(n) != records || n < 2 {
		t.Errorf("jsonrtc_store_records %v, the store holds %d", n, records)
	}
	if n := sum(`(?m)^jsonrtc_store_bytes (\S+)$`); n < 100 {
		t.Errorf("jsonrtc_store_bytes %v", n)
	}
}
