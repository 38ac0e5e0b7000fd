package logx

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// Lazy returns a handler that passes records to h and keeps the
// attributes of WithAttrs unformatted until a record is handled: the
// wrapped handler's WithAttrs is called at the first Handle of a derived
// handler (and its result kept for the next records), or at WithGroup.
// Enabled is h's: a derived handler must not change the level (true of
// the standard library's handlers).
func Lazy(h slog.Handler) slog.Handler {
	if l, ok := h.(*lazy); ok {
		return l
	}
	return &lazy{base: h}
}

type lazy struct {
	base  slog.Handler // the wrapped handler, without attrs
	attrs []slog.Attr  // not yet given to base; never modified once set
	made  atomic.Pointer[slog.Handler]
}

func (l *lazy) Enabled(ctx context.Context, level slog.Level) bool {
	return l.base.Enabled(ctx, level)
}

func (l *lazy) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return l
	}
	all := make([]slog.Attr, 0, len(l.attrs)+len(attrs))
	all = append(append(all, l.attrs...), attrs...)
	return &lazy{base: l.base, attrs: all}
}

func (l *lazy) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return &lazy{base: l.handler().WithGroup(name)}
}

func (l *lazy) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}

// handler is base with the attrs, made once (two goroutines writing the
// first line at once may both make it; either result is the same).
func (l *lazy) handler() slog.Handler {
	if len(l.attrs) == 0 {
		return l.base
	}
	if h := l.made.Load(); h != nil {
		return *h
	}
	h := l.base.WithAttrs(l.attrs)
	l.made.Store(&h)
	return h
}
