package logx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"
)

// The handler keeps the slog.Handler contract (testing/slogtest) over
// the JSON handler.
func TestLazyHandler(t *testing.T) {
	var buf bytes.Buffer
	h := Lazy(slog.NewJSONHandler(&buf, nil))
	results := func() []map[string]any {
		var ms []map[string]any
		for _, line := range bytes.Split(buf.Bytes(), []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatal(err)
			}
			ms = append(ms, m)
		}
		return ms
	}
	if err := slogtest.TestHandler(h, results); err != nil {
		t.Fatal(err)
	}
}

// The attributes come out as the wrapped handler would write them, in
// order, with groups, and a derived logger is not changed by the loggers
// derived from it.
func TestLazySameLines(t *testing.T) {
	var eager, lazy bytes.Buffer
	opts := &slog.HandlerOptions{ReplaceAttr: func(g []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(g) == 0 {
			return slog.Attr{}
		}
		return a
	}}
	for _, c := range []struct {
		buf *bytes.Buffer
		h   slog.Handler
	}{{&eager, slog.NewTextHandler(&eager, opts)}, {&lazy, Lazy(slog.NewTextHandler(&lazy, opts))}} {
		root := slog.New(c.h).With("prog", "pmult")
		sess := root.With("session", "s1", "mta", "unix")
		b1 := sess.With("backend", "py1")
		b2 := sess.With("backend", "py2")
		b1.Info("one", "n", 1)
		sess.Info("two")
		b2.WithGroup("g").With("k", "v").Info("three", "x", "y")
		b1.Info("four")
		root.Debug("hidden")
	}
	if eager.String() != lazy.String() {
		t.Fatalf("lazy handler wrote\n%s\nthe text handler\n%s", lazy.String(), eager.String())
	}
	if n := strings.Count(lazy.String(), "\n"); n != 4 {
		t.Fatalf("%d lines:\n%s", n, lazy.String())
	}
}

// Loggers derived at once from one logger, written through from several
// goroutines (go test -race).
func TestLazyConcurrent(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	l := slog.New(Lazy(slog.NewTextHandler(w, nil))).With("a", 1)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				l.Info("x", "i", i, "j", j)
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(buf.String(), " a=1 "); n != 400 {
		t.Fatalf("%d lines with a=1, want 400", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// With through the lazy handler against the text handler (allocations
// and time for a derived logger that writes nothing, as most of pmult's
// per-session loggers).
func BenchmarkWith(b *testing.B) {
	for _, c := range []struct {
		name string
		h    slog.Handler
	}{{"text", slog.NewTextHandler(discard{}, nil)}, {"lazy", Lazy(slog.NewTextHandler(discard{}, nil))}} {
		root := slog.New(c.h).With("prog", "pmult")
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := root.With("session", "a1b2c3", "mta", "unix:/run/pmult.sock")
				_ = s.With("backend", "opendkim")
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
