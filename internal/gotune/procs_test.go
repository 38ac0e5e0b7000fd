package gotune

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The decision: one busy interval restores Max at once; only DownAfter
// quiet intervals in a row lower it to 1; anything between resets the
// count.
func TestProcsStep(t *testing.T) {
	s := procsState{max: 4, cur: 4, up: 0.6, down: 0.35, after: 3}
	for i, c := range []struct {
		cores float64
		want  int
	}{
		{0.1, 4}, {0.1, 4}, {0.5, 4}, // the middle resets the quiet count
		{0.1, 4}, {0.2, 4}, {0.3, 1}, // three quiet in a row
		{0.5, 1}, {0.1, 1}, // between: stays
		{0.6, 4}, // busy: back at once
		{0.9, 4}, {0.1, 4}, {0.1, 4}, {0.1, 1},
	} {
		if got := s.step(c.cores); got != c.want {
			t.Fatalf("step %d (%.2f cores) = %d, want %d", i, c.cores, got, c.want)
		}
	}
}

// Run with a fake clock of CPU time: idle lowers GOMAXPROCS to 1, load
// raises it to Max, and the end of ctx restores Max.
func TestProcsRun(t *testing.T) {
	var mu sync.Mutex
	var used time.Duration
	var busy, broken atomic.Bool
	cur := 2
	var sets []int
	p := &Procs{Max: 2, Interval: 5 * time.Millisecond, DownAfter: 2,
		CPU: func() (time.Duration, error) {
			mu.Lock()
			defer mu.Unlock()
			if busy.Load() {
				used += 20 * time.Millisecond // far above one core per interval
			}
			if broken.Load() {
				return 0, errors.New("no clock")
			}
			return used, nil
		},
		Set: func(n int) int {
			mu.Lock()
			defer mu.Unlock()
			old := cur
			if n > 0 {
				cur = n
				sets = append(sets, n)
			}
			return old
		},
	}
	get := func() int { mu.Lock(); defer mu.Unlock(); return cur }
	waitFor := func(want int) {
		t.Helper()
		for i := 0; i < 2000 && get() != want; i++ {
			time.Sleep(time.Millisecond)
		}
		if got := get(); got != want {
			t.Fatalf("GOMAXPROCS %d, want %d (sets %v)", got, want, sets)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	waitFor(1)
	busy.Store(true)
	waitFor(2)
	busy.Store(false)
	waitFor(1)
	cancel()
	<-done
	if got := get(); got != 2 {
		t.Errorf("after Run: GOMAXPROCS %d, want Max 2 back", got)
	}
	// A CPU clock that fails ends the adapting with Max restored.
	busy.Store(false)
	go func() { p.Run(context.Background()) }()
	waitFor(1)
	broken.Store(true)
	waitFor(2)
}

// An administrator's GOMAXPROCS is kept: AdaptProcs does not start.
func TestAdaptProcsKeepsEnv(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	if AdaptProcs(context.Background()) {
		t.Error("AdaptProcs started although GOMAXPROCS is set")
	}
}

// rusage counts this process's CPU.
func TestRusage(t *testing.T) {
	a, err := rusage()
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i ^ x
	}
	if b, _ := rusage(); b <= a {
		t.Errorf("rusage %v then %v (x %d)", a, b, x)
	}
}
