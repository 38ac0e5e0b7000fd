// measure.go: sessions, load runs, latency percentiles and idle heap.

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	adapter "github.com/mailmux/mailmux/adapters/milter"
	backend "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/pmult"
)

// Mux is an in-process pmult listening on loopback.
type Mux struct {
	Addr string
	srv  *adapter.Server
}

// StartMux starts pmult with the given backend addresses (null backends).
// With reuse, backend connections are kept across sessions (QUIT_NC).
func StartMux(backends []string, reuse bool) (*Mux, error) {
	log := slog.New(slog.DiscardHandler)
	eng := &pmult.Engine{Log: log}
	for i, a := range backends {
		eng.Slots = append(eng.Slots, pmult.Slot{Backend: backend.New(backend.Config{
			Name: fmt.Sprintf("null%d", i+1), Network: "tcp", Address: a, Reuse: reuse})})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &Mux{Addr: ln.Addr().String(), srv: &adapter.Server{Engine: eng, Log: log}}
	go m.srv.Serve(ln)
	return m, nil
}

// Stop shuts the mux down.
func (m *Mux) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.srv.Shutdown(ctx)
	m.srv.Engine.Retire()
}

// mtaOffer is what Postfix 3.x offers.
var mtaOffer = pmult.Offer{Actions: 0x1FF &^ pmult.ActSetSymList, SymList: true, Skip: true,
	RejectedRcpts: true, LeadingSpace: true, Version: 6}

// envelopeKinds are the commands whose latency is reported.
var envelopeKinds = []pmult.Kind{pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt, pmult.KindData}

var (
	body  = make([]byte, 2048)
	macro = []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"j", "mx.example.com", "{daemon_name}", "smtpd"}}}
)

func script(rcpts int) []*pmult.Event {
	evs := []*pmult.Event{
		{Kind: pmult.KindConnect, Macros: macro, Hostname: "client.example.org", Family: '4', Port: 40000, Address: "192.0.2.7"},
		{Kind: pmult.KindHelo, Arg: "client.example.org"},
		{Kind: pmult.KindMail, Args: []string{"<sender@example.org>", "SIZE=2400"}},
	}
	for i := 0; i < rcpts; i++ {
		evs = append(evs, &pmult.Event{Kind: pmult.KindRcpt, Args: []string{fmt.Sprintf("<rcpt%d@example.com>", i)}})
	}
	evs = append(evs,
		&pmult.Event{Kind: pmult.KindData},
		&pmult.Event{Kind: pmult.KindHeader, Name: "From", Value: " sender@example.org"},
		&pmult.Event{Kind: pmult.KindHeader, Name: "To", Value: " rcpt0@example.com"},
		&pmult.Event{Kind: pmult.KindHeader, Name: "Subject", Value: " benchmark"},
		&pmult.Event{Kind: pmult.KindEOH},
		&pmult.Event{Kind: pmult.KindBody, Chunk: body},
		&pmult.Event{Kind: pmult.KindEOM},
	)
	return evs
}

// Lat collects per-command latencies.
type Lat struct {
	mu sync.Mutex
	d  map[pmult.Kind][]time.Duration
}

func (l *Lat) add(k pmult.Kind, d time.Duration) {
	l.mu.Lock()
	if l.d == nil {
		l.d = map[pmult.Kind][]time.Duration{}
	}
	l.d[k] = append(l.d[k], d)
	l.mu.Unlock()
}

// Envelope returns the p50 and p99 latency over all envelope commands.
func (l *Lat) Envelope() (p50, p99 time.Duration) {
	var all []time.Duration
	for _, k := range envelopeKinds {
		all = append(all, l.d[k]...)
	}
	return pct(all, 50), pct(all, 99)
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)]
}

// Session runs one SMTP-like session against a milter at addr.
func Session(ctx context.Context, addr string, rcpts int, lat *Lat) error {
	c := backend.New(backend.Config{Network: "tcp", Address: addr, ReadTimeout: 30 * time.Second})
	s, err := c.Open(ctx, pmult.OpenInfo{Offer: mtaOffer})
	if err != nil {
		return err
	}
	defer s.Close()
	for _, ev := range script(rcpts) {
		t0 := time.Now()
		if _, err := s.Handle(ctx, ev); err != nil {
			return err
		}
		if lat != nil {
			lat.add(ev.Kind, time.Since(t0))
		}
	}
	return nil
}

// FanoutSession is a session in which the client itself sends every event
// to all backends at once (post to each, then await each): what a
// multiplexer that cost nothing would achieve. It bounds from above what
// pmult can reach on the same machine, where the backends' own work is
// counted too.
func FanoutSession(ctx context.Context, addrs []string, rcpts int) error {
	var ss []pmult.Pipeliner
	defer func() {
		for _, s := range ss {
			s.(pmult.BackendSession).Close()
		}
	}()
	for _, a := range addrs {
		s, err := backend.New(backend.Config{Network: "tcp", Address: a, ReadTimeout: 30 * time.Second}).
			Open(ctx, pmult.OpenInfo{Offer: mtaOffer})
		if err != nil {
			return err
		}
		p, ok := s.(pmult.Pipeliner)
		if !ok {
			s.Close()
			return fmt.Errorf("backend %s: its sessions do not pipeline", a)
		}
		ss = append(ss, p)
	}
	answer := make([]bool, len(ss))
	for _, ev := range script(rcpts) {
		for i, s := range ss {
			var err error
			if answer[i], err = s.Post(ctx, ev); err != nil {
				return err
			}
		}
		for i, s := range ss {
			if answer[i] {
				if _, err := s.Await(ctx, ev); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// FanoutLoad is Load with FanoutSession against addrs.
func FanoutLoad(addrs []string, conc int, dur time.Duration) Result {
	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	return load(conc, dur, 0, func() error { return FanoutSession(ctx, addrs, 1) })
}

// Result of a load run.
type Result struct {
	Sessions int
	Elapsed  time.Duration
	Errors   int
	Lat      *Lat
}

// Rate is sessions per second.
func (r Result) Rate() float64 { return float64(r.Sessions) / r.Elapsed.Seconds() }

// Load runs sessions with conc workers for dur. If rate > 0 the sessions
// are paced to that many per second in total (open loop on a schedule).
func Load(addr string, conc int, dur time.Duration, rate float64) Result {
	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	lat := &Lat{}
	r := load(conc, dur, rate, func() error { return Session(ctx, addr, 1, lat) })
	r.Lat = lat
	return r
}

// load runs f with conc workers for dur and counts the runs that
// succeeded and failed. If rate > 0 the runs are paced to that many per
// second in total (open loop on a schedule).
func load(conc int, dur time.Duration, rate float64, f func() error) Result {
	var n, errs atomic.Int64
	start := time.Now()
	end := start.Add(dur)
	var next atomic.Int64 // schedule slot
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if rate > 0 {
					at := start.Add(time.Duration(float64(next.Add(1)-1) / rate * float64(time.Second)))
					if at.After(end) {
						return
					}
					time.Sleep(time.Until(at))
				} else if time.Now().After(end) {
					return
				}
				if err := f(); err != nil {
					errs.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return Result{Sessions: int(n.Load()), Elapsed: time.Since(start), Errors: int(errs.Load())}
}

// IdleHeap opens n sessions (negotiated, CONNECT sent) against addr, and
// returns the heap growth per session while they are all open.
func IdleHeap(addr string, n int) (float64, error) {
	ctx := context.Background()
	var sessions []pmult.BackendSession
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	before := heap()
	for i := 0; i < n; i++ {
		c := backend.New(backend.Config{Network: "tcp", Address: addr})
		s, err := c.Open(ctx, pmult.OpenInfo{Offer: mtaOffer})
		if err != nil {
			return 0, err
		}
		sessions = append(sessions, s)
		ev := script(1)
		for _, e := range ev[:2] {
			if _, err := s.Handle(ctx, e); err != nil {
				return 0, err
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	after := heap()
	return float64(after-before) / float64(n), nil
}

func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// SessionTime is the mean time of k sequential sessions with rcpts
// recipients (no concurrency), against addr.
func SessionTime(addr string, k, rcpts int) (time.Duration, error) {
	start := time.Now()
	for i := 0; i < k; i++ {
		if err := Session(context.Background(), addr, rcpts, nil); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(k), nil
}

// ChainTime plays a serial chain (as Postfix's smtpd_milters does): each
// command goes to backend 1, then 2, then 3, one after the other.
func ChainTime(addrs []string, k, rcpts int) (time.Duration, error) {
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < k; i++ {
		var ss []pmult.BackendSession
		for _, a := range addrs {
			s, err := backend.New(backend.Config{Network: "tcp", Address: a}).Open(ctx, pmult.OpenInfo{Offer: mtaOffer})
			if err != nil {
				return 0, err
			}
			ss = append(ss, s)
		}
		for _, ev := range script(rcpts) {
			for _, s := range ss {
				if _, err := s.Handle(ctx, ev); err != nil {
					return 0, err
				}
			}
		}
		for _, s := range ss {
			s.Close()
		}
	}
	return time.Since(start) / time.Duration(k), nil
}

// SyncTime is the mean time of k sequential engine sessions with rcpts
// recipients, through n synchronous backends (pmult.Func: no pipelining)
// that each take d per RCPT: with the engine running them concurrently,
// it stays near the time of one such backend, not n times it.
func SyncTime(n int, d time.Duration, k, rcpts int) (time.Duration, error) {
	e := &pmult.Engine{}
	for i := range n {
		f := pmult.Func(fmt.Sprint("sync", i), pmult.Caps{}, func(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
			if ev.Kind == pmult.KindRcpt {
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					return pmult.Reply{}, ctx.Err()
				}
			}
			return pmult.Reply{}, nil
		})
		e.Slots = append(e.Slots, pmult.Slot{Backend: f})
	}
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < k; i++ {
		s := e.NewSession("bench", slog.New(slog.DiscardHandler))
		s.Open(ctx, mtaOffer, nil)
		for _, ev := range script(rcpts) {
			if r := s.Handle(ctx, ev); r.Verdict.Objects() {
				s.Close()
				return 0, fmt.Errorf("synchronous backends answered %s at %s", r.Verdict, ev.Kind)
			}
		}
		s.Close()
	}
	return time.Since(start) / time.Duration(k), nil
}
