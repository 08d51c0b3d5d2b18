package limits

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCollector(t *testing.T) {
	l := newLimiter(t, Config{Profiles: map[string]Profile{"default": {
		Identity: Quota{Frames: Rate{Rate: 1, Per: time.Hour, Burst: 1}},
	}}})
	s := open(t, l, "app", "a")
	s.AllowFrame()
	s.AllowFrame()
	s.AllowFrame()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				name += " " + lp.GetName() + "=" + lp.GetValue()
			}
			if c := m.GetCounter(); c != nil {
				got[name] = c.GetValue()
			} else {
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	if v := got["jsonrtc_limits_denied_total reason=frames scope=identity"]; v != 2 {
		t.Errorf("frames/identity denials = %v, want 2 (all: %v)", v, got)
	}
	if v, ok := got["jsonrtc_limits_denied_total reason=handshakes scope=address"]; !ok || v != 0 {
		t.Errorf("handshakes/address series = %v, %v; want present at 0", v, ok)
	}
	if v := got["jsonrtc_limits_tracked_keys"]; v != 2 {
		t.Errorf("tracked keys = %v, want 2 (app and identity)", v)
	}
	if len(got) != len(l.Denials())+1 {
		t.Errorf("%d series, want %d", len(got), len(l.Denials())+1)
	}
}
