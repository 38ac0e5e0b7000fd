// metrics.go: counters of the engine, kept with atomics on the hot path and
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

// Metrics counts what an Engine's sessions did. The zero value is ready.
type Metrics struct {
	sessions atomic.Uint64
	active   atomic.Int64
	replies  [numKinds][numVerdicts]atomic.Uint64
	backends []backendCounters // by slot index; allocated with the engine
}

func newMetrics(slots int) *Metrics {
	return &Metrics{backends: make([]backendCounters, slots)}
}

func (m *Metrics) backend(i int) *backendCounters {
	if i < 0 || i >= len(m.backends) {
		return nil
	}
	return &m.backends[i]
}

// WriteText writes the counters in the Prometheus text exposition format.
// names are the backends' names in slot order.
func (m *Metrics) WriteText(w io.Writer, names []string) error {
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
	for i := range m.backends {
		b := &m.backends[i]
		for k := KindConnect; k < numKinds; k++ {
			for v := 0; v < numVerdicts; v++ {
				if n := b.replies[k][v].Load(); n > 0 {
					p("pmult_backend_replies_total{backend=%q,stage=%q,verdict=%q} %d\n", name(names, i), k.String(), Verdict(v).String(), n)
				}
			}
		}
	}
	p("# TYPE pmult_backend_failures_total counter\n")
	for i := range m.backends {
		b := &m.backends[i]
		for k := KindNone; k < numKinds; k++ {
			if n := b.failures[k].Load(); n > 0 {
				st := k.String()
				if k == KindNone {
					st = "open"
				}
				p("pmult_backend_failures_total{backend=%q,stage=%q} %d\n", name(names, i), st, n)
			}
		}
	}
	p("# TYPE pmult_backend_skipped_total counter\n")
	for i := range m.backends {
		p("pmult_backend_skipped_total{backend=%q} %d\n", name(names, i), m.backends[i].skipped.Load())
	}
	p("# TYPE pmult_backend_edits_total counter\n")
	for i := range m.backends {
		for e := 1; e < numEdits; e++ {
			if n := m.backends[i].edits[e].Load(); n > 0 {
				p("pmult_backend_edits_total{backend=%q,edit=%q} %d\n", name(names, i), EditKind(e).String(), n)
			}
		}
	}
	return err
}

func name(names []string, i int) string {
	if i < len(names) {
		return names[i]
	}
	return fmt.Sprint(i)
}
