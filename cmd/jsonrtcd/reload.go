package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/jsonrtc/jsonrtc/gateway"
)

// reloadOnHUP reads the configuration again at each SIGHUP and applies
// its routing section (gateway.Reload: docs/routing.md). A file that does
// not load or validate changes nothing; the log says which key is wrong.
// The returned function stops listening and waits for a reload in
// progress; it is also stopped by ctx.
func reloadOnHUP(ctx context.Context, g *gateway.Gateway, load func() (gateway.Config, error), log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-hup:
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
		var others bool
		if others, err = g.Reload(cfg); err == nil {
			log.Info("configuration reloaded: routing applies to new requests")
			if others {
				log.Warn("configuration reloaded: sections other than routing changed and take effect at the next restart")
			}
			return
		}
	}
	log.Error("configuration not reloaded; the running one stays", "err", err)
}
