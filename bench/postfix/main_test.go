package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadProc reads this process's CPU time and context switches the
// way the bench reads pmult's.
func TestReadProc(t *testing.T) {
	x := 0
	for i := 0; i < 50_000_000; i++ { // some CPU time to see (10 ms ticks)
		x += i ^ x
	}
	p := readProc(&tb{name: "test"}, os.Getpid())
	if p.cpu <= 0 || p.csw <= 0 {
		t.Errorf("readProc = %+v (x %d), want CPU time and context switches", p, x)
	}
}

func TestMedianSpread(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if s := spread([]float64{3, 1, 2}); s != "1-3" {
		t.Errorf("spread = %q", s)
	}
}

// TestPerMessage parses strace -c's summary (with and without an errors
// column) into calls and errors per message.
func TestPerMessage(t *testing.T) {
	summary := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 52.10    0.101000           5     20000           write
 40.00    0.080000           3     22000      7000 read
------ ----------- ----------- --------- --------- ----------------
100.00    0.181000           4     42000      7000 total
`
	got := perMessage(summary, 1000)
	for _, want := range []string{"write                  20.0        0.0", "read                   22.0        7.0", "total                  42.0        7.0"} {
		if !strings.Contains(got, want) {
			t.Errorf("perMessage: no %q in\n%s", want, got)
		}
	}
}

// TestPhaseFatal: a Fatalf inside a phase is its error, and its cleanups
// run in reverse order all the same.
func TestPhaseFatal(t *testing.T) {
	var order []int
	err := phase("p", func(b *tb) {
		b.Cleanup(func() { order = append(order, 1) })
		b.Cleanup(func() { order = append(order, 2) })
		b.Fatalf("boom %d", 7)
	})
	if err == nil || err.Error() != "boom 7" {
		t.Errorf("err = %v, want boom 7", err)
	}
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanups ran %v, want [2 1]", order)
	}
	if err := phase("q", func(b *tb) {}); err != nil {
		t.Errorf("clean phase: %v", err)
	}
}
