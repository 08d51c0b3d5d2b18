package ratelog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder keeps the records written to it.
type recorder struct {
	mu    sync.Mutex
	recs  []slog.Record
	attrs []slog.Attr
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs(a []slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler        { return r }

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		m := rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "cause" || a.Key == "suppressed" {
				m += fmt.Sprintf(" %s=%v", a.Key, a.Value)
			}
			return true
		})
		out = append(out, m)
	}
	return out
}

func TestBudgetPerCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := New(slog.New(rec), &Options{Lines: 2, Interval: time.Second})
		s := l.With("session_id", "S1") // shares the budget
		for range 1000 {
			l.Warn("gap", "sequence gap")
			s.Info("bad", "bad frame")
		}
		if got := len(rec.messages()); got != 4 {
			t.Fatalf("%d lines written during the flood, want 2 per cause: %q", got, rec.messages())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := rec.messages()
		want := map[string]bool{"suppressed similar lines cause=gap suppressed=998": true, "suppressed similar lines cause=bad suppressed=998": true}
		for _, m := range got[4:] {
			if !want[m] {
				t.Errorf("unexpected line %q", m)
			}
			delete(want, m)
		}
		if len(want) != 0 {
			t.Errorf("missing summaries %v in %q", want, got)
		}
		// The summary took one line of the new window.
		l.Warn("gap", "sequence gap")
		l.Warn("gap", "sequence gap")
		if n := len(rec.messages()); n != 7 {
			t.Errorf("%d lines after the window rolled, want 7", n)
		}
		// A quiet cause gets its full budget back once its window is over.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		l.Info("bad", "bad frame")
		l.Info("bad", "bad frame")
		if n := len(rec.messages()); n != 10 {
			t.Errorf("%d lines, want 10: %q", n, rec.messages())
		}
	})
}

func TestCausesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := New(slog.New(rec), &Options{Lines: 1, Interval: time.Second, MaxCauses: 4})
		for i := range 1000 {
			l.Info(fmt.Sprint("cause", i), "line")
		}
		if n := len(l.b.causes); n > 4 {
			t.Errorf("%d causes tracked, want at most 4", n)
		}
		// 3 distinct causes, then "other" takes the rest (one line).
		if n := len(rec.messages()); n != 4 {
			t.Errorf("%d lines, want 4", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		// Expired windows make room for new causes.
		l.Info("fresh", "line")
		if _, ok := l.b.causes["fresh"]; !ok {
			t.Errorf("a new cause found no room after the windows ended")
		}
	})
}

func TestHandlerKeysByMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := New(slog.New(rec), &Options{Lines: 3, Interval: time.Second})
		lib := slog.New(l.Handler("sipgo: ")).With("transport", "udp")
		for range 100 {
			lib.Error("failed to parse", "data", "garbage")
			lib.Debug("noise")
		}
		lib.Info("listening")
		if n := len(rec.messages()); n != 3+100+1 {
			t.Errorf("%d lines, want 3 errors, 100 debug lines and 1 info", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := rec.messages()
		if last := got[len(got)-1]; last != "suppressed similar lines cause=sipgo: failed to parse suppressed=97" {
			t.Errorf("last line %q", last)
		}
	})
}

func TestDisabledLevelCostsNothing(t *testing.T) {
	var n int
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { n++; return len(p), nil }), &slog.HandlerOptions{Level: slog.LevelWarn})
	l := New(slog.New(h), &Options{Lines: 1})
	for range 10 {
		l.Info("c", "info line")
	}
	l.Warn("c", "warn line")
	if n != 1 {
		t.Errorf("%d lines, want the one warning", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
