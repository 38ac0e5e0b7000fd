package logx

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// writes records every Write call.
type writes struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, string(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *writes) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

// TestBatchHolds: the first line after a quiet spell goes out at once,
// the lines after it are held until Flush, then written in one call.
func TestBatchHolds(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, time.Hour)
	for i := range 5 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	if got := w.got(); len(got) != 1 || got[0] != "line 0\n" {
		t.Fatalf("before Flush: %q, want the first line alone", got)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	got := w.got()
	if len(got) != 2 || got[1] != "line 1\nline 2\nline 3\nline 4\n" {
		t.Fatalf("after Flush: %q", got)
	}
	if err := b.Flush(); err != nil || len(w.got()) != 2 {
		t.Fatalf("an empty Flush wrote: %q, %v", w.got(), err)
	}
}

// TestBatchTimer: held lines are written by the timer, without a Flush.
func TestBatchTimer(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, 20*time.Millisecond)
	defer b.Close()
	b.Write([]byte("a\n"))
	b.Write([]byte("b\n"))
	b.Write([]byte("c\n"))
	deadline := time.Now().Add(10 * time.Second)
	for strings.Join(w.got(), "") != "a\nb\nc\n" {
		if time.Now().After(deadline) {
			t.Fatalf("held lines never written: %q", w.got())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := w.got(); len(got) != 2 {
		t.Errorf("%d writes %q, want the first line, then the two held ones together", len(got), got)
	}
}

// TestBatchFull: 32 KiB held are written without waiting.
func TestBatchFull(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, time.Hour)
	line := strings.Repeat("x", 1023) + "\n"
	for range 1 + batchMax/len(line) {
		b.Write([]byte(line))
	}
	got := w.got()
	if len(got) != 2 || len(got[1]) != batchMax {
		t.Fatalf("%d writes, want 2 (the first line, then 32 KiB)", len(got))
	}
}

// TestBatchClose: Close writes what is held; later lines go straight out.
func TestBatchClose(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, time.Hour)
	b.Write([]byte("a\n"))
	b.Write([]byte("b\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.Write([]byte("c\n"))
	b.Write([]byte("d\n"))
	if got := w.got(); strings.Join(got, "|") != "a\n|b\n|c\n|d\n" {
		t.Fatalf("writes %q", got)
	}
}

// TestBatchError: an error of a held write is returned by the next call.
func TestBatchError(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, time.Hour)
	b.Write([]byte("a\n"))
	b.Write([]byte("b\n"))
	w.err = errors.New("disk full")
	if err := b.Flush(); err == nil || err.Error() != "disk full" {
		t.Fatalf("Flush: %v, want disk full", err)
	}
	if _, err := b.Write([]byte("c\n")); err != nil {
		t.Fatalf("the error was returned twice: %v", err)
	}
}

// TestBatchWarnFlushes: NewText on a Batch writes a warning, and the
// lines held before it, at once.
func TestBatchWarnFlushes(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, time.Hour)
	log := slog.New(NewText(b, nil))
	log.Info("one")
	log.Info("two")
	log.Info("three")
	if n := len(w.got()); n != 1 {
		t.Fatalf("%d writes before the warning, want 1", n)
	}
	log.With("backend", "x").Warn("backend died")
	all := strings.Join(w.got(), "")
	if !strings.Contains(all, "msg=two") || !strings.Contains(all, "msg=three") || !strings.Contains(all, `msg="backend died" backend=x`) {
		t.Fatalf("after the warning: %q", all)
	}
	log.WithGroup("g").Error("slow path", "k", 1) // the standard handler's path flushes too
	log.Info("held")
	log.Error("now")
	all = strings.Join(w.got(), "")
	if !strings.Contains(all, "g.k=1") || !strings.Contains(all, "msg=held") || !strings.Contains(all, "msg=now") {
		t.Fatalf("after the errors: %q", all)
	}
}

// TestBatchConcurrent: lines from many goroutines are all written,
// whole, once each.
func TestBatchConcurrent(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	b := NewBatch(w, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				fmt.Fprintf(b, "g%d line %d\n", g, i)
			}
		}()
	}
	wg.Wait()
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Fatalf("line %q twice", l)
		}
		seen[l] = true
	}
	if len(seen) != 8*500 {
		t.Fatalf("%d lines, want %d", len(seen), 8*500)
	}
}
