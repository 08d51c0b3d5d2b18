// Package ratelog bounds the log lines that people outside the gateway can
// cause. A malformed frame, a refused connect or a bad SIP message is worth
// a line; a hundred thousand of them a second are a denial of service on
// the disk and on whoever reads the log. [Logger] wraps a *slog.Logger and
// lets through, per cause, a few lines per interval; the rest are counted,
// and one line "suppressed similar lines" with the count follows when the
// interval ends. [Logger.Handler] does the same, keyed by message, for
// libraries that take a slog.Handler and log what the network sends them
// (sipgo).
//
// Start with [New]; loggers made by [Logger.With] share its budgets, so
// that a thousand sessions flooding one cause still write a few lines.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Options tune a Logger; nil means defaults.
type Options struct {
	// Lines is how many lines of one cause are written per Interval.
	// Default 5.
	Lines int
	// Interval is the budget's window. Default 10 s.
	Interval time.Duration
	// MaxCauses bounds the causes tracked at once; causes beyond it share
	// one budget (cause "other"). Default 256.
	MaxCauses int
}

const (
	defaultLines     = 5
	defaultInterval  = 10 * time.Second
	defaultMaxCauses = 256
	otherCause       = "other"
)

// Logger writes lines through a shared per-cause budget. It is safe for
// concurrent use and starts no goroutine; a cause that had lines
// suppressed arms one timer that reports them when its window ends.
type Logger struct {
	log *slog.Logger
	b   *budgets
}

// budgets is the state every Logger derived from one New shares.
type budgets struct {
	log       *slog.Logger // summaries go here, without With's attributes
	lines     int
	interval  time.Duration
	maxCauses int

	mu     sync.Mutex
	causes map[string]*window
}

// window is one cause's budget for the interval that began at start.
type window struct {
	start      time.Time
	written    int
	suppressed int
	level      slog.Level
	msg        string // the last suppressed line's message
	timer      *time.Timer
}

// New returns a Logger writing to log (nil: discard).
func New(log *slog.Logger, opts *Options) *Logger {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Lines <= 0 {
		o.Lines = defaultLines
	}
	if o.Interval <= 0 {
		o.Interval = defaultInterval
	}
	if o.MaxCauses <= 0 {
		o.MaxCauses = defaultMaxCauses
	}
	o.MaxCauses = max(o.MaxCauses, 2)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Logger{log: log, b: &budgets{log: log, lines: o.Lines, interval: o.Interval, maxCauses: o.MaxCauses,
		causes: map[string]*window{}}}
}

// With returns a Logger that adds args to every line and shares l's
// budgets.
func (l *Logger) With(args ...any) *Logger { return &Logger{log: l.log.With(args...), b: l.b} }

// To returns a Logger that writes to log (a logger that already carries
// its own attributes, such as a call's) and shares l's budgets.
func (l *Logger) To(log *slog.Logger) *Logger { return &Logger{log: log, b: l.b} }

// Debug writes msg at level Debug unless cause has used up its budget.
func (l *Logger) Debug(cause, msg string, args ...any) { l.write(slog.LevelDebug, cause, msg, args) }

// DebugEnabled reports whether Debug lines are written at all, so that a
// caller builds their arguments only then.
func (l *Logger) DebugEnabled() bool { return l.log.Enabled(context.Background(), slog.LevelDebug) }

// Info writes msg at level Info unless cause has used up its budget.
func (l *Logger) Info(cause, msg string, args ...any) { l.write(slog.LevelInfo, cause, msg, args) }

// Warn writes msg at level Warn unless cause has used up its budget.
func (l *Logger) Warn(cause, msg string, args ...any) { l.write(slog.LevelWarn, cause, msg, args) }

// Error writes msg at level Error unless cause has used up its budget.
func (l *Logger) Error(cause, msg string, args ...any) { l.write(slog.LevelError, cause, msg, args) }

func (l *Logger) write(level slog.Level, cause, msg string, args []any) {
	ctx := context.Background()
	// A disabled level costs no budget: what is not written is not
	// suppressed either.
	if !l.log.Enabled(ctx, level) {
		return
	}
	if l.b.allow(level, cause, msg) {
		l.log.Log(ctx, level, msg, args...)
	}
}

// allow takes one line from cause's budget, or counts it as suppressed.
func (b *budgets) allow(level slog.Level, cause, msg string) bool {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.causes[cause]
	if w == nil {
		// One slot stays for "other".
		if len(b.causes) >= b.maxCauses-1 {
			b.forgetIdle(now)
		}
		if len(b.causes) >= b.maxCauses-1 {
			cause = otherCause
			w = b.causes[cause]
		}
		if w == nil {
			w = &window{start: now}
			b.causes[cause] = w
		}
	}
	if w.timer == nil && now.Sub(w.start) >= b.interval {
		w.start, w.written = now, 0
	}
	if w.written < b.lines {
		w.written++
		return true
	}
	w.suppressed++
	w.level, w.msg = level, msg
	if w.timer == nil {
		w.timer = time.AfterFunc(w.start.Add(b.interval).Sub(now), func() { b.report(cause, w) })
	}
	return false
}

// report writes the count of cause's suppressed lines when its window
// ends. The summary opens the next window, as one of its lines: a cause
// flooded without pause writes Lines lines per Interval in all.
func (b *budgets) report(cause string, w *window) {
	b.mu.Lock()
	n, level, msg := w.suppressed, w.level, w.msg
	w.suppressed, w.timer = 0, nil
	w.start, w.written = time.Now(), 1
	b.mu.Unlock()
	b.log.Log(context.Background(), level, "suppressed similar lines",
		"cause", cause, "suppressed", n, "last", msg)
}

// forgetIdle drops the windows that are over and have nothing to report;
// b.mu is held. Called only when the table is full, so at most once per
// new cause.
func (b *budgets) forgetIdle(now time.Time) {
	for k, w := range b.causes {
		if w.timer == nil && now.Sub(w.start) >= b.interval {
			delete(b.causes, k)
		}
	}
}

// Handler returns a slog.Handler that writes to l's logger through l's
// budgets, with the record's message as the cause (prefixed with
// prefix). It is for libraries that log what the network sends them
// (sipgo logs every unparsable SIP message at Error, with its bytes).
// Debug records pass unbudgeted: they are off in production.
func (l *Logger) Handler(prefix string) slog.Handler {
	return &handler{h: l.log.Handler(), b: l.b, prefix: prefix}
}

type handler struct {
	h      slog.Handler
	b      *budgets
	prefix string
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool { return h.h.Enabled(ctx, level) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo && !h.b.allow(r.Level, h.prefix+r.Message, r.Message) {
		return nil
	}
	return h.h.Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{h: h.h.WithAttrs(attrs), b: h.b, prefix: h.prefix}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{h: h.h.WithGroup(name), b: h.b, prefix: h.prefix}
}
