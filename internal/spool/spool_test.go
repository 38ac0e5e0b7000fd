package spool

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func chunks(s *Spool, t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	if err := s.Range(func(c []byte) bool {
		out = append(out, bytes.Clone(c))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Chunks come back byte-exact with their boundaries, from memory first and
// from the file once the per-message threshold is passed.
func TestMemoryThenFile(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{Memory: 10, Dir: dir})
	in := [][]byte{[]byte("abcd"), []byte("efgh"), []byte("ij"), []byte("k"), []byte("lmnopqrstu"), []byte("v")}
	for i, c := range in {
		buf := bytes.Clone(c)
		if err := s.Write(buf); err != nil {
			t.Fatal(err)
		}
		copy(buf, "XXXXXXXXXXXX") // the caller reuses its buffer
		if got, want := s.Spilled(), i >= 3; got != want {
			t.Errorf("after chunk %d: spilled = %v, want %v", i, got, want)
		}
	}
	if s.InMemory() != 10 || s.Len() != 22 || s.Chunks() != len(in) {
		t.Errorf("in memory %d, len %d, chunks %d", s.InMemory(), s.Len(), s.Chunks())
	}
	for pass := 0; pass < 2; pass++ { // Range can be repeated (one replay per backend)
		got := chunks(s, t)
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", in) {
			t.Errorf("pass %d: chunks %q, want %q", pass, got, in)
		}
	}
	if names := files(t, dir); len(names) != 0 {
		t.Errorf("spool file left visible (not unlinked at creation): %v", names)
	}
	s.Reset()
	if s.Len() != 0 || s.Chunks() != 0 || s.Spilled() || cap(s.mem) != 0 {
		t.Errorf("after Reset: len %d chunks %d spilled %v cap %d", s.Len(), s.Chunks(), s.Spilled(), cap(s.mem))
	}
	s.Write([]byte("again"))
	if got := chunks(s, t); len(got) != 1 || string(got[0]) != "again" || s.Spilled() {
		t.Errorf("second message: %q spilled=%v", got, s.Spilled())
	}
}

// Range stops when fn says so.
func TestRangeStops(t *testing.T) {
	s := New(Config{Memory: 2, Dir: t.TempDir()})
	defer s.Reset()
	for _, c := range []string{"a", "b", "c", "d"} {
		s.Write([]byte(c))
	}
	n := 0
	s.Range(func([]byte) bool { n++; return n < 3 })
	if n != 3 {
		t.Errorf("fn called %d times, want 3", n)
	}
}

// Memory <= 0: every chunk goes to the file; the file is 0600 and closed
// by Reset.
func TestFileOnly(t *testing.T) {
	s := New(Config{Memory: 0, Dir: t.TempDir()})
	s.Write([]byte("x"))
	if !s.Spilled() || s.InMemory() != 0 {
		t.Fatalf("spilled %v, in memory %d", s.Spilled(), s.InMemory())
	}
	fi, err := s.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("spool file mode %v, want 0600", fi.Mode().Perm())
	}
	f := s.f
	s.Reset()
	if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("file not closed by Reset: %v", err)
	}
}

// A file that could not be unlinked at creation is removed by Reset.
func TestNamedFileRemoved(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{Dir: dir})
	s.Write([]byte("x"))
	// Recreate the situation of a system that cannot unlink an open file.
	name := filepath.Join(dir, "pmult-spool-named")
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.fname = name
	s.Reset()
	if names := files(t, dir); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
}

// A spool directory that does not exist: the write error is returned,
// sticky, and Range refuses the incomplete message.
func TestWriteError(t *testing.T) {
	s := New(Config{Memory: 1, Dir: filepath.Join(t.TempDir(), "missing")})
	if err := s.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	err := s.Write([]byte("bc"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("write error = %v", err)
	}
	if s.Write([]byte("d")) != err || s.Err() != err {
		t.Error("write error not sticky")
	}
	if err := s.Range(func([]byte) bool { return true }); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Range = %v, want ErrIncomplete", err)
	}
	s.Reset()
	if s.Err() != nil || s.Write([]byte("e")) != nil {
		t.Error("Reset did not clear the error")
	}
}

// The budget caps the memory of all spools together; the spools beyond it
// spill, and every byte is handed back by Reset.
func TestBudget(t *testing.T) {
	b := NewBudget(8192)
	dir := t.TempDir()
	s1 := New(Config{Memory: 8192, Dir: dir, Budget: b})
	s2 := New(Config{Memory: 8192, Dir: dir, Budget: b})
	s1.Write(make([]byte, 5000))
	if s1.Spilled() || b.Used() != 5000 {
		t.Fatalf("s1 spilled %v, used %d", s1.Spilled(), b.Used())
	}
	s2.Write(make([]byte, 4000)) // 5000 + 4000 > 8192
	if !s2.Spilled() {
		t.Error("s2 got memory beyond the budget")
	}
	s1.Reset()
	s2.Reset()
	if b.Used() != 0 {
		t.Errorf("used %d after Reset", b.Used())
	}
}

// Many spools at once on one budget (run with -race): never over the
// limit, all handed back, every message intact.
func TestBudgetConcurrent(t *testing.T) {
	const limit = 64 << 10
	b := NewBudget(limit)
	dir := t.TempDir()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			s := New(Config{Memory: 32 << 10, Dir: dir, Budget: b})
			for msg := 0; msg < 50; msg++ {
				var want [][]byte
				for n := r.IntN(20); n > 0; n-- {
					c := make([]byte, 1+r.IntN(8000))
					for i := range c {
						c[i] = byte(r.Uint32())
					}
					if err := s.Write(c); err != nil {
						t.Error(err)
						return
					}
					want = append(want, c)
					if u := b.Used(); u > limit {
						t.Errorf("budget used %d > %d", u, limit)
					}
				}
				got := chunks(s, t)
				if len(got) != len(want) {
					t.Errorf("%d chunks back, want %d", len(got), len(want))
				}
				for i := range min(len(got), len(want)) {
					if !bytes.Equal(got[i], want[i]) {
						t.Errorf("chunk %d differs", i)
					}
				}
				s.Reset()
			}
		}()
	}
	wg.Wait()
	if b.Used() != 0 {
		t.Errorf("used %d after all spools reset", b.Used())
	}
	if names := files(t, dir); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
}

// FuzzSpool: any split of any data, any threshold: the same chunks back.
func FuzzSpool(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{3, 0, 5, 9}, 4, 100)
	f.Add(bytes.Repeat([]byte{0}, 300), []byte{200, 1, 99}, 0, 0)
	f.Add([]byte("abc"), []byte{}, 1000, 1)
	f.Fuzz(func(t *testing.T, data, cuts []byte, memory, budget int) {
		memory %= 1 << 16
		budget %= 1 << 16
		s := New(Config{Memory: memory, Dir: t.TempDir(), Budget: NewBudget(int64(budget))})
		defer s.Reset()
		var want [][]byte
		rest := data
		for _, c := range cuts {
			n := min(int(c), len(rest))
			if n == 0 {
				continue
			}
			want = append(want, rest[:n])
			rest = rest[n:]
		}
		if len(rest) > 0 {
			want = append(want, rest)
		}
		for _, c := range want {
			if err := s.Write(c); err != nil {
				t.Fatal(err)
			}
		}
		if s.InMemory() > max(memory, 0) || s.Len() != int64(len(data)) {
			t.Fatalf("in memory %d (limit %d), len %d of %d", s.InMemory(), memory, s.Len(), len(data))
		}
		got := chunks(s, t)
		if len(got) != len(want) {
			t.Fatalf("%d chunks, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("chunk %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// BenchmarkSpool writes and reads back a 4 MiB message in 64 KiB chunks,
// all in memory and all in a file.
func BenchmarkSpool(b *testing.B) {
	chunk := make([]byte, 64<<10)
	for _, memory := range []int{8 << 20, 0} {
		b.Run(fmt.Sprintf("memory=%d", memory), func(b *testing.B) {
			s := New(Config{Memory: memory, Dir: b.TempDir()})
			b.SetBytes(64 * int64(len(chunk)))
			for b.Loop() {
				for range 64 {
					if err := s.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				s.Range(func([]byte) bool { return true })
				s.Reset()
			}
		})
	}
}

// SetLimit resizes a budget in use (a reload of memory_budget): what is
// reserved stays, new reservations see the new limit.
func TestBudgetSetLimit(t *testing.T) {
	b := NewBudget(100)
	if !b.reserve(80) {
		t.Fatal("80 of 100 refused")
	}
	b.SetLimit(50)
	if b.reserve(1) || b.Used() != 80 || b.Limit() != 50 {
		t.Fatalf("after SetLimit(50): used %d, limit %d", b.Used(), b.Limit())
	}
	b.release(80)
	b.SetLimit(-1)
	if b.reserve(1) || b.Limit() != 0 {
		t.Errorf("SetLimit(-1): limit %d", b.Limit())
	}
}
