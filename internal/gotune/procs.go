// procs.go: GOMAXPROCS follows the process's load (Procs).

package gotune

import (
	"context"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Procs keeps GOMAXPROCS at 1 while the process needs well under one core
// and at Max when it needs more.
//
// Why: with two or more processors Go's scheduler, on each of the many
// waits a milter multiplexer makes per message, wakes a second thread to
// look for work (a "spinning" M) that finds none and sleeps again, and
// steals work between processors. Through Postfix with 3 pymilter
// backends that is about 11% of pmult's CPU per message (make
// bench-postfix: 0.67-0.69 ms with 2 processors, 0.60 with 1, same
// messages/s). One processor caps the process at one core, so Procs
// raises GOMAXPROCS back as soon as the process uses more than Up cores
// in one Interval and lowers it only after DownAfter intervals in a row
// under Down.
type Procs struct {
	Max       int           // GOMAXPROCS when busy (0: the runtime's own choice at Run)
	Interval  time.Duration // how often the load is looked at (0: 500 ms)
	Up        float64       // cores used in one interval that restore Max (0: 0.6)
	Down      float64       // cores used below which ... (0: 0.35)
	DownAfter int           // ... for this many intervals in a row GOMAXPROCS becomes 1 (0: 10)

	// CPU returns the process's CPU time so far (an error stops the
	// adapting: GOMAXPROCS goes back to Max) and Set sets GOMAXPROCS and
	// returns the previous setting (tests replace them; nil: getrusage and
	// runtime.GOMAXPROCS).
	CPU func() (time.Duration, error)
	Set func(int) int
}

// AdaptProcs runs Procs with its defaults until ctx ends, unless GOMAXPROCS
// is set in the environment (a setting the administrator chose is kept) or
// the runtime has one processor already; it reports whether it started.
// It returns at once; GOMAXPROCS is the runtime's own choice again once
// ctx has ended.
func AdaptProcs(ctx context.Context) bool {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) < 2 {
		return false
	}
	p := &Procs{}
	go p.Run(ctx)
	return true
}

// Run adapts GOMAXPROCS until ctx ends, then restores Max.
func (p *Procs) Run(ctx context.Context) {
	cpu, set := p.CPU, p.Set
	if cpu == nil {
		cpu = rusage
	}
	if set == nil {
		set = runtime.GOMAXPROCS
	}
	max := p.Max
	if max == 0 {
		max = set(0)
	}
	interval := orDuration(p.Interval, 500*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	cur := set(0)
	defer func() {
		if cur != max {
			set(max)
		}
	}()
	st := procsState{max: max, cur: cur, up: orFloat(p.Up, 0.6), down: orFloat(p.Down, 0.35), after: p.DownAfter}
	if st.after <= 0 {
		st.after = 10
	}
	last, err := cpu()
	if err != nil {
		return
	}
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c, err := cpu()
			if err != nil {
				return // never stuck at 1 on a clock it cannot read
			}
			cores := float64(c-last) / float64(now.Sub(lastAt))
			last, lastAt = c, now
			if n := st.step(cores); n != cur {
				set(n)
				cur = n
			}
		}
	}
}

// procsState is Procs's decision, apart from clocks and the runtime.
type procsState struct {
	max, cur int
	up, down float64
	after    int
	quiet    int // intervals in a row under down
}

// step takes the cores used in the last interval and returns the
// GOMAXPROCS to run with next.
func (s *procsState) step(cores float64) int {
	switch {
	case cores >= s.up:
		s.quiet = 0
		s.cur = s.max
	case cores < s.down:
		s.quiet++
		if s.quiet >= s.after {
			s.cur = 1
		}
	default:
		s.quiet = 0
	}
	return s.cur
}

// rusage is the process's user and system CPU time.
func rusage() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orFloat(f, def float64) float64 {
	if f > 0 {
		return f
	}
	return def
}
