package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/jsonrtc/jsonrtc/gateway"
)

// watchInterval is how often the configuration file is checked for a
// change (its modification time or size).
const watchInterval = 2 * time.Second

// reloadOnHUP reads the configuration again at each SIGHUP, and when the
// file at path (if any) changes, and applies its routing section (rules,
// trunks, header rules, to_web)
// (gateway.Reload: docs/routing.md). A file that does not load or
// validate changes nothing; the log says which key is wrong. The
// returned function stops listening and waits for a reload in progress;
// it is also stopped by ctx.
func reloadOnHUP(ctx context.Context, g *gateway.Gateway, load func() (gateway.Config, error), path string, every time.Duration, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	// The file as it is now, before this returns: a change made after
	// it is a change.
	var last os.FileInfo
	if path != "" {
		last, _ = os.Stat(path)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		var tick <-chan time.Time
		if path != "" {
			t := time.NewTicker(every)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-hup:
				reload(g, load, log)
			case <-tick:
				fi, err := os.Stat(path)
				if err != nil || (last != nil && fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size()) {
					continue // unchanged, or gone for a moment (an editor's rename)
				}
				last = fi
				reload(g, load, log)
			case <-ctx.Done():
				return
			}
		}
	})
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

func reload(g *gateway.Gateway, load func() (gateway.Config, error), log *slog.Logger) {
	cfg, err := load()
	if err == nil {
		var restart []string
		if restart, err = g.Reload(cfg); err == nil {
			log.Info("configuration reloaded: routing (rules, trunks, headers, to_web) and templates apply to new requests and calls")
			if len(restart) > 0 {
				log.Warn("configuration reloaded: changed sections ignored until the next restart", "sections", restart)
			}
			return
		}
	}
	log.Error("configuration not reloaded; the running one stays", "err", err)
}
