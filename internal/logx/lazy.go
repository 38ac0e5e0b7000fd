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
	base   slog.Handler // the wrapped handler (with its groups), for a lazy without parent
	parent *lazy        // attrs apply on top of parent's handler; nil: none
	attrs  []slog.Attr  // not yet given to the handler; never modified
	made   atomic.Pointer[slog.Handler]
}

func (l *lazy) Enabled(ctx context.Context, level slog.Level) bool {
	return l.base.Enabled(ctx, level)
}

// WithAttrs keeps attrs as they are (a Handler owns the slice it is
// given) on top of l: one allocation, no copy of l's attributes.
func (l *lazy) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return l
	}
	return &lazy{base: l.base, parent: l, attrs: attrs}
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

// handler is the parent's handler with the attrs, made once (two
// goroutines writing the first line at once may both make it; either
// result is the same). Making it makes the parent's too, kept for the
// parent's own lines and its other children.
func (l *lazy) handler() slog.Handler {
	if l.parent == nil {
		return l.base
	}
	if h := l.made.Load(); h != nil {
		return *h
	}
	h := l.parent.handler().WithAttrs(l.attrs)
	l.made.Store(&h)
	return h
}
