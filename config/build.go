// build.go: turns a loaded configuration into the engine and its
// backends (the wiring; each backend is built by its type's package, see
// backends.go).

package config

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mailmux/mailmux/pmult"
)

// Engine builds the pmult engine for this configuration.
func (c *Config) Engine(log *slog.Logger) (*pmult.Engine, error) {
	e := &pmult.Engine{
		Parallel:     c.Content == ContentParallel,
		MaxMessage:   c.MaxMessage,
		SpoolMemory:  orNone(c.SpoolMemory),
		MemoryBudget: int64(orNone(c.MemoryBudget)),
		SpoolDir:     c.SpoolDir,
		OpenTimeout:  c.OpenTimeout.Duration,
		ReadOnlyLive: c.ReadOnly == ReadOnlyLive,
		ChainMerge:   c.Merge == MergeChain,
		Log:          log,
		Macros:       c.Macros.Tables(""), // {mult_version}: the caller sets Macros.Version

		QuietDecisions: !c.DecisionLog,
	}
	for _, b := range c.Backends {
		act, err := pmult.ParseFailAction(b.OnFailure)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", b.Name, err)
		}
		if b.Settings == nil {
			return nil, fmt.Errorf("backend %q: no settings of type %q (not from Parse)", b.Name, b.Type)
		}
		be := b.Settings.NewBackend(b.Name, c.MaxBackendPacket, backendLog(log, b.LogLevel))
		var wait pmult.KindSet
		for _, st := range b.WaitEarlier {
			wait = wait.With(WaitStages[st])
		}
		e.Slots = append(e.Slots, pmult.Slot{Backend: be, Policy: pmult.Policy{
			OnFailure:   act,
			Evaluate:    b.Mode == ModeEvaluate,
			Condition:   b.If,
			WaitEarlier: wait,
		}})
	}
	return e, nil
}

// orNone maps a configured 0 ("none") to the engine's negative "none"
// (its 0 is "the default").
func orNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// backendLog returns log filtered to level (pmult's client log-level);
// "" or a nil log: log as it is.
func backendLog(log *slog.Logger, level string) *slog.Logger {
	if log == nil || level == "" {
		return log
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return log
	}
	return slog.New(minLevel{min: l, h: log.Handler()})
}

// minLevel drops records below min.
type minLevel struct {
	min slog.Level
	h   slog.Handler
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{min: m.min, h: m.h.WithAttrs(as)}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{min: m.min, h: m.h.WithGroup(g)} }
