package logx

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// NewText returns a handler that writes exactly what
// slog.NewTextHandler(w, opts) writes, formatting the records pmult
// writes (attributes of kind string, integer, float, bool and duration,
// no groups) itself: about five times faster for a line of long quoted
// values such as pmult's decision line, where the standard handler
// quotes rune by rune. Other records, and any handler derived with
// WithGroup, go through a slog.TextHandler writing to w under the same
// lock, so lines never interleave. Attributes of WithAttrs are formatted
// when a derived handler first writes (as Lazy). With AddSource or
// ReplaceAttr set it returns Lazy(slog.NewTextHandler(w, opts)).
func NewText(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	if o.AddSource || o.ReplaceAttr != nil {
		return Lazy(slog.NewTextHandler(w, &o))
	}
	c := &textCore{w: w, level: o.Level}
	c.flush, _ = w.(interface{ Flush() error })
	c.slow = slog.NewTextHandler(lockedWriter{c}, &o)
	return &text{core: c}
}

type textCore struct {
	mu    sync.Mutex // held for each line's Write
	w     io.Writer
	level slog.Leveler
	slow  slog.Handler // the standard handler, writing through lockedWriter
	// flush is w's Flush (a Batch's), called after each warning or
	// error so that a line explaining a failure is not held; nil if none.
	flush interface{ Flush() error }
}

type lockedWriter struct{ c *textCore }

func (l lockedWriter) Write(p []byte) (int, error) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.c.w.Write(p)
}

type text struct {
	core   *textCore
	parent *text       // attrs apply on top of parent's; nil: the root
	attrs  []slog.Attr // never modified
	pre    atomic.Pointer[prefix]
	slow   atomic.Pointer[slog.Handler]
}

// prefix is a handler's attributes as formatted, each after a space;
// fast is false when one of them is not formatted here.
type prefix struct {
	b    []byte
	fast bool
}

var rootPrefix = &prefix{fast: true}

func (t *text) Enabled(_ context.Context, level slog.Level) bool {
	min := slog.LevelInfo
	if t.core.level != nil {
		min = t.core.level.Level()
	}
	return level >= min
}

func (t *text) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return t
	}
	return &text{core: t.core, parent: t, attrs: attrs} // a Handler owns the slice
}

func (t *text) WithGroup(name string) slog.Handler {
	if name == "" {
		return t
	}
	return Lazy(t.slowHandler()).WithGroup(name)
}

// prefix returns t's attributes formatted (made once, from the parent's).
func (t *text) prefix() *prefix {
	if t.parent == nil {
		return rootPrefix
	}
	if p := t.pre.Load(); p != nil {
		return p
	}
	pp := t.parent.prefix()
	p := &prefix{fast: pp.fast}
	if p.fast {
		b := append([]byte(nil), pp.b...)
		for _, a := range t.attrs {
			var ok bool
			if b, ok = appendAttr(b, a); !ok {
				p.fast = false
				break
			}
		}
		if p.fast {
			p.b = b
		}
	}
	t.pre.Store(p)
	return p
}

// slowHandler is the standard handler with t's attributes (made once).
func (t *text) slowHandler() slog.Handler {
	if t.parent == nil {
		return t.core.slow
	}
	if h := t.slow.Load(); h != nil {
		return *h
	}
	h := t.parent.slowHandler().WithAttrs(t.attrs)
	t.slow.Store(&h)
	return h
}

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (t *text) Handle(ctx context.Context, r slog.Record) error {
	p := t.prefix()
	if !p.fast {
		return t.flushed(r, t.slowHandler().Handle(ctx, r))
	}
	bp := linePool.Get().(*[]byte)
	b := (*bp)[:0]
	if !r.Time.IsZero() {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, r.Time.Round(0))
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = appendString(b, r.Level.String())
	b = append(b, " msg="...)
	b = appendString(b, r.Message)
	b = append(b, p.b...)
	fast := true
	r.Attrs(func(a slog.Attr) bool {
		b, fast = appendAttr(b, a)
		return fast
	})
	var err error
	if fast {
		b = append(b, '\n')
		t.core.mu.Lock()
		_, err = t.core.w.Write(b)
		t.core.mu.Unlock()
	} else {
		err = t.slowHandler().Handle(ctx, r)
	}
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		linePool.Put(bp)
	}
	return t.flushed(r, err)
}

// flushed flushes the writer after a warning or an error.
func (t *text) flushed(r slog.Record, err error) error {
	if r.Level >= slog.LevelWarn && t.core.flush != nil {
		if ferr := t.core.flush.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// appendAttr appends " key=value" as the standard text handler writes
// it, or reports false for an attribute it leaves to that handler
// (groups, values of other kinds, LogValuers, an empty key).
func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		return b, false
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration:
	default:
		return b, false
	}
	b = append(b, ' ')
	b = appendString(b, a.Key)
	b = append(b, '=')
	switch v.Kind() {
	case slog.KindString:
		b = appendString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		b = strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = append(b, v.Duration().String()...)
	}
	return b, true
}

// appendString appends s as the standard text handler does: as it is
// unless it needs quoting (needsQuoting), then strconv.Quote'd. Printable
// ASCII without a quote or backslash is quoted by wrapping it, which is
// what strconv.Quote makes of it.
func appendString(b []byte, s string) []byte {
	needs, plain := len(s) == 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			if needsQuoting(s) {
				return strconv.AppendQuote(b, s)
			}
			return append(b, s...)
		case c == ' ' || c == '=':
			needs = true
		case c == '"' || c < ' ':
			needs, plain = true, false
		case c == '\\' || c == 0x7f: // no quoting needed, but Quote escapes them
			plain = false
		}
	}
	switch {
	case !needs:
		return append(b, s...)
	case plain:
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	return strconv.AppendQuote(b, s)
}

// needsQuoting is log/slog's rule for the text handler: empty, a space,
// '=', a quote, a control character (not DEL, not a backslash), or a rune
// that is invalid, a space or not printable.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || c == '"' || c < ' ') {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// appendRFC3339Millis formats t as the standard handlers do: RFC 3339
// with exactly three digits of milliseconds.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the fourth digit
}
