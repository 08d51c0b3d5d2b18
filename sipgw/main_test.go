package sipgw

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

// TestMain applies the process-wide sipgo settings as cmd/jsonrtcd does,
// so that the tests run with what production runs.
func TestMain(m *testing.M) {
	SetProcessDefaults(Config{})
	os.Exit(m.Run())
}

// startTest starts a gateway with cfg and closes it in Cleanup.
func startTest(t *testing.T, cfg Config, log *slog.Logger) *UserAgent {
	t.Helper()
	return startWith(t, cfg, &Options{Logger: log})
}

// startWith starts a gateway with cfg and o and closes it in Cleanup.
func startWith(t testing.TB, cfg Config, o *Options) *UserAgent {
	t.Helper()
	g, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return g
}
