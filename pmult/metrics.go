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

package pmult

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

const numVerdicts = int(Shutdown) + 1
const numEdits = int(EditQuarantine) + 1

type backendCounters struct {
	replies  [numKinds][numVerdicts]atomic.Uint64
	failures [numKinds]atomic.Uint64
	skipped  atomic.Uint64
	edits    [numEdits]atomic.Uint64
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

	mu       sync.Mutex
	byName   map[string]*backendCounters
	backends []*backendCounters // in the order first seen
	names    []string
}

// NewMetrics returns empty counters.
func NewMetrics() *Metrics { return &Metrics{} }

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
	return err
}
