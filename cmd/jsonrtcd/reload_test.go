package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsonrtc/jsonrtc/gateway"
	"github.com/jsonrtc/jsonrtc/routing"
)

// lines hands each log record's message to a channel.
type lines chan string

func (l lines) Enabled(context.Context, slog.Level) bool { return true }
func (l lines) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l <- msg
	return nil
}
func (l lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l lines) WithGroup(string) slog.Handler      { return l }

// SIGHUP reloads the routing section; a configuration that fails keeps
// the running one, and the log names the bad key.
func TestReloadOnHUP(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.Store.Backend = gateway.StoreMemory
	g, err := gateway.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	next := make(chan func() (gateway.Config, error), 1)
	load := func() (gateway.Config, error) { return (<-next)() }
	log := make(lines, 8)
	stop := reloadOnHUP(context.Background(), g, load, "", time.Hour, slog.New(log))
	defer stop()
	expect := func(want string) {
		t.Helper()
		select {
		case l := <-log:
			if !strings.Contains(l, want) {
				t.Fatalf("log %q, want %q", l, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no log line %q", want)
		}
	}
	good := cfg
	good.Routing.Rules = []routing.RuleConfig{{Name: "all", ActionConfig: routing.ActionConfig{Web: true}}}
	next <- func() (gateway.Config, error) { return good, nil }
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	expect("configuration reloaded")

	bad := cfg
	bad.Routing.Rules = []routing.RuleConfig{{Name: "x"}}
	next <- func() (gateway.Config, error) { return bad, nil }
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	expect("routing.rules[0]: no action")

	// A restart-only key changed is logged as ignored, by section,
	// while routing's to_web applies.
	restart := good
	restart.Calls.RingTimeout *= 2
	restart.Routing.ToWeb = []routing.ToWebConfig{{Header: "X-Carrier", Ext: "x-carrier", Methods: []string{"BYE"}}}
	next <- func() (gateway.Config, error) { return restart, nil }
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	expect("configuration reloaded")
	expect("ignored until the next restart sections=[calls]")

	next <- func() (gateway.Config, error) { return cfg, errors.New("sesion: unknown key") }
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	expect("sesion")
}

// A change of the configuration file reloads it, as SIGHUP does.
func TestReloadOnFileChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jsonrtcd.yaml")
	write := func(body string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		// Distinct times: a coarse file system clock would hide a change.
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	write("store: {backend: memory}\n", now.Add(-time.Hour))
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	log := make(lines, 8)
	stop := reloadOnHUP(context.Background(), g, func() (gateway.Config, error) { return gateway.LoadConfig(path) },
		path, 10*time.Millisecond, slog.New(log))
	defer stop()
	write("store: {backend: memory}\nrouting:\n  rules: [{name: x}]\n", now)
	select {
	case l := <-log:
		if !strings.Contains(l, "routing.rules[0]: no action") {
			t.Fatalf("log %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the change was not noticed")
	}
}
