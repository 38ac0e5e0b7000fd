package logx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"
	"time"
)

// both writes r through NewText and slog.NewTextHandler, each derived
// with the same attribute lists, and returns the two outputs.
func both(t testing.TB, level slog.Leveler, with [][]slog.Attr, group string, r slog.Record) (ours, std string) {
	var a, b bytes.Buffer
	opts := &slog.HandlerOptions{Level: level}
	ha, hb := NewText(&a, opts), slog.Handler(slog.NewTextHandler(&b, opts))
	for _, attrs := range with {
		ha, hb = ha.WithAttrs(attrs), hb.WithAttrs(attrs)
	}
	if group != "" {
		ha, hb = ha.WithGroup(group), hb.WithGroup(group)
	}
	ctx := context.Background()
	if ha.Enabled(ctx, r.Level) != hb.Enabled(ctx, r.Level) {
		t.Fatalf("Enabled(%v) differs", r.Level)
	}
	if err := ha.Handle(ctx, r.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := hb.Handle(ctx, r.Clone()); err != nil {
		t.Fatal(err)
	}
	return a.String(), b.String()
}

type stringer struct{}

func (stringer) String() string { return "a stringer" }

// The same lines as the standard handler, for the values pmult writes and
// for those left to the standard handler.
func TestTextSameLines(t *testing.T) {
	at := time.Date(2026, 12, 1, 19, 13, 30, 253_999_000, time.UTC)
	strs := []string{"", "plain", "two words", "a=b", `quote"d`, `back\slash`, `both "\ `, "tab\there", "nl\n",
		"\x7f", "a \x7f", "\x00", "ünïcode", "ü space", "\u00a0nbsp", "\u2028", "\xff\xfe", "\ufffd", "py1(connect=continue/0.120ms helo=continue/0.101ms)", "<a@example.org>", "-"}
	var cases []slog.Record
	for _, s := range strs {
		r := slog.NewRecord(at, slog.LevelInfo, s, 0)
		r.AddAttrs(slog.String("v", s), slog.String(s+"k", "x"))
		cases = append(cases, r)
	}
	r := slog.NewRecord(at, slog.LevelWarn+2, "kinds", 0)
	r.AddAttrs(slog.Int("int", -7), slog.Uint64("uint", 1<<63), slog.Float64("float", 1.5e-9), slog.Bool("bool", true),
		slog.Duration("dur", 1500*time.Millisecond), slog.Int64("zero", 0))
	cases = append(cases, r)
	// Left to the standard handler.
	r = slog.NewRecord(at, slog.LevelError, "others", 0)
	r.AddAttrs(slog.Any("err", errors.New("boom")), slog.Time("t", at), slog.Any("s", stringer{}),
		slog.Group("g", slog.String("a", "b")), slog.Any("nil", nil), slog.Any("bytes", []byte("x y")))
	cases = append(cases, r)
	r = slog.NewRecord(at, slog.LevelInfo, "empty attrs", 0)
	r.AddAttrs(slog.Attr{}, slog.String("", "keyless"), slog.Group("empty"))
	cases = append(cases, r)
	cases = append(cases, slog.NewRecord(time.Time{}, slog.LevelInfo, "no time", 0))
	cases = append(cases, slog.NewRecord(at.In(time.FixedZone("X", 3600+1800)), slog.LevelDebug-1, "zone", 0))

	withs := [][][]slog.Attr{
		nil,
		{{slog.String("prog", "pmult")}},
		{{slog.String("prog", "pmult")}, {slog.String("session", "s 1"), slog.Int("n", 3)}, {slog.String("qid", "4AB1")}},
		{{slog.String("prog", "pmult")}, {slog.Any("err", errors.New("in the prefix"))}},
	}
	for _, with := range withs {
		for _, group := range []string{"", "grp"} {
			for i, r := range cases {
				ours, std := both(t, slog.LevelDebug-4, with, group, r)
				if ours != std {
					t.Errorf("case %d (with %v, group %q):\n ours %q\n std  %q", i, with, group, ours, std)
				}
			}
		}
	}
}

// FuzzTextSameLines: any message, key and value strings, at any level,
// come out as the standard handler writes them.
func FuzzTextSameLines(f *testing.F) {
	f.Add("decision", "verdicts", "py1(connect=continue/0.1ms)", "session", "a b", int64(0), true)
	f.Add("", "", "", "", "", int64(-3), false)
	f.Add("é\x00\"", "k=", "\\", "\xff", "\u00a0", int64(1<<40), true)
	f.Fuzz(func(t *testing.T, msg, key, val, pkey, pval string, n int64, when bool) {
		at := time.Time{}
		if when {
			at = time.Unix(n%(1<<34), n%1e9).UTC()
		}
		r := slog.NewRecord(at, slog.Level(n%16), msg, 0)
		r.AddAttrs(slog.String(key, val), slog.Int64("n", n), slog.String("v", val))
		with := [][]slog.Attr{{slog.String(pkey, pval)}, {slog.String("k2", val)}}
		ours, std := both(t, slog.LevelDebug-8, with, "", r)
		if ours != std {
			t.Fatalf("\n ours %q\n std  %q", ours, std)
		}
	})
}

// The handler meets log/slog's conformance tests.
func TestTextSlogtest(t *testing.T) {
	var buf bytes.Buffer
	h := NewText(&buf, nil)
	results := func() []map[string]any {
		var ms []map[string]any
		for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
			if line == "" {
				continue
			}
			ms = append(ms, parseTextLine(t, line))
		}
		return ms
	}
	if err := slogtest.TestHandler(h, results); err != nil {
		t.Error(err)
	}
}

// parseTextLine reads k=v pairs (v possibly quoted) into nested maps
// (dotted keys are groups), enough for slogtest.
func parseTextLine(t *testing.T, line string) map[string]any {
	m := map[string]any{}
	for len(line) > 0 {
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			t.Fatalf("no '=' in %q", line)
		}
		key := line[:eq]
		line = line[eq+1:]
		var val string
		if strings.HasPrefix(line, `"`) {
			end := 1
			for end < len(line) && (line[end] != '"' || line[end-1] == '\\') {
				end++
			}
			val = line[1:end]
			line = strings.TrimPrefix(line[min(end+1, len(line)):], " ")
		} else {
			sp := strings.IndexByte(line, ' ')
			if sp < 0 {
				sp = len(line)
			}
			val = line[:sp]
			line = strings.TrimPrefix(line[sp:], " ")
		}
		cur := m
		parts := strings.Split(key, ".")
		for _, g := range parts[:len(parts)-1] {
			sub, ok := cur[g].(map[string]any)
			if !ok {
				sub = map[string]any{}
				cur[g] = sub
			}
			cur = sub
		}
		cur[parts[len(parts)-1]] = val
	}
	return m
}

// Lines written at once from many goroutines, some through the standard
// handler (an error value), never interleave.
func TestTextConcurrentLines(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewText(&buf, nil)).With("prog", "pmult")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := l.With("session", g)
			for i := range 200 {
				if i%3 == 0 {
					s.Info("slow", "err", errors.New("x"), "i", i)
				} else {
					s.Info("fast", "verdicts", strings.Repeat("py(connect=continue/0.1ms) ", 20), "i", i)
				}
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "time=") || strings.Count(line, "time=") != 1 {
			t.Fatalf("interleaved line %q", line)
		}
	}
}

// BenchmarkText writes a line like pmult's decision line (long quoted
// values) through a session's derived logger.
func BenchmarkText(b *testing.B) {
	verdicts := strings.Repeat("py1(connect=continue/0.120ms helo=continue/0.101ms mail=continue/0.098ms) ", 3)
	for _, c := range []struct {
		name string
		h    func(io.Writer) slog.Handler
	}{
		{"std", func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) }},
		{"text", func(w io.Writer) slog.Handler { return NewText(w, nil) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			l := slog.New(c.h(io.Discard)).With("prog", "pmult").With("session", "c0ffee", "mta", "unix:@")
			b.ReportAllocs()
			for b.Loop() {
				l.LogAttrs(context.Background(), slog.LevelInfo, "decision", slog.String("qid", "4AB1"),
					slog.String("from", "<a@example.org>"), slog.Int("rcpts", 1), slog.String("verdicts", verdicts))
			}
		})
	}
}
