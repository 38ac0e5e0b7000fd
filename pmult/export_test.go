// export_test.go: internals the engine's tests (package pmult_test, as
// they use pmulttest, which imports pmult) look at.

package pmult

import "github.com/mailmux/mailmux/internal/spool"

const (
	NumKinds   = numKinds
	BigMessage = bigMessage
)

// BackendFailures returns the failure count of backend i at kind k.
func BackendFailures(e *Engine, i int, k Kind) uint64 {
	return e.Metrics().backend(i).failures[k].Load()
}

// MTAHeaders applies edits to the header list hdrs (name, value pairs) as
// the MTA does and returns the result as "Name:Value" strings.
func MTAHeaders(hdrs []string, edits []Edit) []string {
	m := &headerModel{}
	for i := 0; i+1 < len(hdrs); i += 2 {
		m.received(hdrs[i], hdrs[i+1])
	}
	for _, e := range edits {
		m.add(e)
	}
	return m.strings()
}

// MessageSpool returns the spool of the message in progress (nil: none).
func (s *Session) MessageSpool() *spool.Spool { return s.msg.sp }

// SpoolBudget returns the engine's memory budget.
func (e *Engine) SpoolBudget() *spool.Budget { return e.spoolBudget() }

// BigActive returns the number of big messages in progress.
func (e *Engine) BigActive() int32 { return e.bigActive.Load() }

// SetRelease replaces the hand-back of memory (debug.FreeOSMemory).
func (e *Engine) SetRelease(f func()) { e.release = f }

// BackendState is one backend's state within a session.
type BackendState struct {
	Dead, DoneMsg, InMsg bool
	Skip                 Kind
}

// BackendStates returns the state of every backend, in chain order.
func (s *Session) BackendStates() []BackendState {
	out := make([]BackendState, len(s.bs))
	for i, b := range s.bs {
		out[i] = BackendState{Dead: b.dead, DoneMsg: b.doneMsg, InMsg: b.inMsg, Skip: b.skip}
	}
	return out
}

// Engine returns the engine the session runs on.
func (s *Session) Engine() *Engine { return s.e }

// MetricsBackends returns the number of backends m has counters for.
func MetricsBackends(m *Metrics) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.backends)
}
