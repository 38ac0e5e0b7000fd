// metrics.go: counters of the engines, kept with atomics on the hot path
// (an engine looks its backends' counters up once, not per session) and
// written in the Prometheus text format (no client library needed):
//
//	pmult_sessions_total, pmult_sessions_active
//	pmult_replies_total{stage,verdict}              merged replies to the MTA
//	pmult_backend_replies_total{backend,stage,verdict}
//	pmult_backend_failures_total{backend,stage}     dropped from a session
//	pmult_backend_skipped_total{backend}            not tried: known down
//	pmult_backend_edits_total{backend,edit}         edits passed to the MTA
//	pmult_backend_latency_seconds{backend,stage}    histogram: event out to answer in
//	pmult_decisions_total{backend,reply}            messages by the backend whose
//	                                                verdict decided them ("": none)
//	pmult_backend_up{backend}, pmult_backend_breaker_state{backend,state}
//	                                                (WriteBackendState, backends
//	                                                with a circuit breaker)

package pmult

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const numVerdicts = int(Shutdown) + 1
const numEdits = int(EditQuarantine) + 1

type backendCounters struct {
	replies  [numKinds][numVerdicts]atomic.Uint64
	failures [numKinds]atomic.Uint64
	skipped  atomic.Uint64
	edits    [numEdits]atomic.Uint64
	lat      [numKinds]histogram
	decided  [numReplies]atomic.Uint64
}

// latencyBuckets are the upper bounds of the latency histograms.
var latencyBuckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// histogram counts durations per bucket (not cumulative; the last is
// +Inf) and their sum.
type histogram struct {
	n   [len(latencyBuckets) + 1]atomic.Uint64
	sum atomic.Int64 // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBuckets) && d > latencyBuckets[i] {
		i++
	}
	h.n[i].Add(1)
	h.sum.Add(int64(d))
}

// The outcomes of a message in pmult_decisions_total: the verdicts, then
// the MTA's abort (or quit) before the end of the message.
const (
	replyAbort = numVerdicts + iota
	replyQuit
	numReplies
)

func replyIndex(r *Record) int {
	switch {
	case r.Ended == "abort":
		return replyAbort
	case r.Ended == "quit":
		return replyQuit
	case !r.Reply.Objects():
		return int(Accept)
	}
	return int(r.Reply)
}

func replyName(i int) string {
	switch i {
	case replyAbort:
		return "abort"
	case replyQuit:
		return "quit"
	}
	return Verdict(i).String()
}

// Metrics counts what the sessions of one or more engines did: owned by
// the process and shared by the engines it loads (Engine.Counters), so that
// a reload neither resets the counters nor forgets the sessions still open
// on a retired engine. Backend counters are keyed by backend name: a
// backend kept across a reload keeps counting where it was; one removed
// keeps its last values. The zero value is ready.
type Metrics struct {
	sessions atomic.Uint64
	active   atomic.Int64
	replies  [numKinds][numVerdicts]atomic.Uint64
	// undecided counts the messages no backend's verdict decided.
	undecided [numReplies]atomic.Uint64

	// lsess counts SMTP sessions (CONNECT events) by listener name
	// (Offer.Listener): string to *atomic.Uint64.
	lsess sync.Map

	mu       sync.Mutex
	byName   map[string]*backendCounters
	backends []*backendCounters // in the order first seen
	names    []string
}

// NewMetrics returns empty counters.
func NewMetrics() *Metrics { return &Metrics{} }

// listenerSession counts one SMTP session (a CONNECT event) of the
// listener called name ("": unnamed).
func (m *Metrics) listenerSession(name string) {
	c, ok := m.lsess.Load(name)
	if !ok {
		c, _ = m.lsess.LoadOrStore(name, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(1)
}

// ListenerSessions returns the number of SMTP sessions (CONNECT events,
// so each session of a reused MTA connection) of the listener called name
// ("": the unnamed ones); the process writes it as
// pmult_listener_sessions_total{listener}.
func (m *Metrics) ListenerSessions(name string) uint64 {
	if c, ok := m.lsess.Load(name); ok {
		return c.(*atomic.Uint64).Load()
	}
	return 0
}

// forBackend returns the counters of the backend called name, made at
// first use. Engines call it once per slot, not per session.
func (m *Metrics) forBackend(name string) *backendCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.byName[name]; ok {
		return c
	}
	if m.byName == nil {
		m.byName = make(map[string]*backendCounters)
	}
	c := &backendCounters{}
	m.byName[name] = c
	m.backends = append(m.backends, c)
	m.names = append(m.names, name)
	return c
}

// backend returns the counters of the i-th backend seen (for an engine's
// own Metrics, its slot i), nil when there is none.
func (m *Metrics) backend(i int) *backendCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.backends) {
		return nil
	}
	return m.backends[i]
}

// WriteText writes the counters in the Prometheus text exposition format,
// the backends in the order they were first seen.
func (m *Metrics) WriteText(w io.Writer) error {
	m.mu.Lock()
	backends, names := slices.Clone(m.backends), slices.Clone(m.names)
	m.mu.Unlock()
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, a...)
		}
	}
	p("# TYPE pmult_sessions_total counter\npmult_sessions_total %d\n", m.sessions.Load())
	p("# TYPE pmult_sessions_active gauge\npmult_sessions_active %d\n", m.active.Load())
	p("# TYPE pmult_replies_total counter\n")
	for k := KindConnect; k < numKinds; k++ {
		for v := 0; v < numVerdicts; v++ {
			if n := m.replies[k][v].Load(); n > 0 {
				p("pmult_replies_total{stage=%q,verdict=%q} %d\n", k.String(), Verdict(v).String(), n)
			}
		}
	}
	p("# TYPE pmult_backend_replies_total counter\n")
	for i, b := range backends {
		for k := KindConnect; k < numKinds; k++ {
			for v := 0; v < numVerdicts; v++ {
				if n := b.replies[k][v].Load(); n > 0 {
					p("pmult_backend_replies_total{backend=%q,stage=%q,verdict=%q} %d\n", names[i], k.String(), Verdict(v).String(), n)
				}
			}
		}
	}
	p("# TYPE pmult_backend_failures_total counter\n")
	for i, b := range backends {
		for k := KindNone; k < numKinds; k++ {
			if n := b.failures[k].Load(); n > 0 {
				st := k.String()
				if k == KindNone {
					st = "open"
				}
				p("pmult_backend_failures_total{backend=%q,stage=%q} %d\n", names[i], st, n)
			}
		}
	}
	p("# TYPE pmult_backend_skipped_total counter\n")
	for i, b := range backends {
		p("pmult_backend_skipped_total{backend=%q} %d\n", names[i], b.skipped.Load())
	}
	p("# TYPE pmult_backend_edits_total counter\n")
	for i, b := range backends {
		for e := 1; e < numEdits; e++ {
			if n := b.edits[e].Load(); n > 0 {
				p("pmult_backend_edits_total{backend=%q,edit=%q} %d\n", names[i], EditKind(e).String(), n)
			}
		}
	}
	p("# TYPE pmult_backend_latency_seconds histogram\n")
	for i, b := range backends {
		for k := KindConnect; k < numKinds; k++ {
			h := &b.lat[k]
			var c [len(h.n)]uint64
			total := uint64(0)
			for j := range h.n {
				c[j] = h.n[j].Load()
				total += c[j]
			}
			if total == 0 {
				continue
			}
			cum := uint64(0)
			for j, le := range latencyBuckets {
				cum += c[j]
				p("pmult_backend_latency_seconds_bucket{backend=%q,stage=%q,le=\"%g\"} %d\n", names[i], k.String(), le.Seconds(), cum)
			}
			p("pmult_backend_latency_seconds_bucket{backend=%q,stage=%q,le=\"+Inf\"} %d\n", names[i], k.String(), total)
			p("pmult_backend_latency_seconds_sum{backend=%q,stage=%q} %g\n", names[i], k.String(), time.Duration(h.sum.Load()).Seconds())
			p("pmult_backend_latency_seconds_count{backend=%q,stage=%q} %d\n", names[i], k.String(), total)
		}
	}
	p("# TYPE pmult_decisions_total counter\n")
	for r := 0; r < numReplies; r++ {
		if n := m.undecided[r].Load(); n > 0 {
			p("pmult_decisions_total{backend=\"\",reply=%q} %d\n", replyName(r), n)
		}
	}
	for i, b := range backends {
		for r := 0; r < numReplies; r++ {
			if n := b.decided[r].Load(); n > 0 {
				p("pmult_decisions_total{backend=%q,reply=%q} %d\n", names[i], replyName(r), n)
			}
		}
	}
	return err
}

// BreakerStater is implemented by backends with a circuit breaker
// (internal/breaker): WriteBackendState reports their state, the current
// down period (0: up) and whether a probe is pending.
type BreakerStater interface {
	BreakerState() (downFor time.Duration, probing bool)
}

// WriteBackendState writes, for each backend of e that has a circuit
// breaker, pmult_backend_up (1 up, 0 down) and
// pmult_backend_breaker_state{state="closed"|"open"|"half_open"} (1 for
// the current state): the backends of the running engine only.
func WriteBackendState(w io.Writer, e *Engine) error {
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, a...)
		}
	}
	type named struct {
		name    string
		downFor time.Duration
		probing bool
	}
	var list []named
	for _, sl := range e.Slots {
		if bs, ok := sl.Backend.(BreakerStater); ok {
			d, p := bs.BreakerState()
			list = append(list, named{sl.Backend.Name(), d, p})
		}
	}
	if len(list) == 0 {
		return nil
	}
	p("# TYPE pmult_backend_up gauge\n")
	for _, b := range list {
		up := 0
		if b.downFor == 0 {
			up = 1
		}
		p("pmult_backend_up{backend=%q} %d\n", b.name, up)
	}
	p("# TYPE pmult_backend_breaker_state gauge\n")
	for _, b := range list {
		cur := "closed"
		switch {
		case b.probing:
			cur = "half_open"
		case b.downFor > 0:
			cur = "open"
		}
		for _, st := range [...]string{"closed", "open", "half_open"} {
			v := 0
			if st == cur {
				v = 1
			}
			p("pmult_backend_breaker_state{backend=%q,state=%q} %d\n", b.name, st, v)
		}
	}
	return err
}
