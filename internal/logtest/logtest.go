// Package logtest has a slog.Handler that counts the lines written, by
// message, for tests that bound what a flood costs the log.
package logtest

import (
	"context"
	"log/slog"
	"maps"
	"sync"
)

// Counter counts records by message. It is safe for concurrent use.
type Counter struct {
	mu    sync.Mutex
	lines map[string]int
}

// NewCounter returns an empty Counter; slog.New(c) logs into it.
func NewCounter() *Counter { return &Counter{lines: map[string]int{}} }

func (c *Counter) Enabled(context.Context, slog.Level) bool { return true }

func (c *Counter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.lines[r.Message]++
	c.mu.Unlock()
	return nil
}

func (c *Counter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *Counter) WithGroup(string) slog.Handler      { return c }

// Count returns how many lines had message msg.
func (c *Counter) Count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines[msg]
}

// Snapshot returns the counts so far.
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.lines)
}
