// switch.go: the engine holder both front ends share: a reload stores a
// new engine, new sessions get it, open sessions keep theirs.

package pmult

import (
	"log/slog"
	"sync/atomic"
)

// Switch holds the engine new sessions use. A reload (SIGHUP) stores the
// new engine: sessions started before keep the engine they started on,
// and the replaced engine is retired (Engine.Retire), so that its
// backends' idle connections close now and those of its open sessions
// close when each ends. The Switch keeps only the current engine: a
// retired one lives as long as its last session. It is safe for
// concurrent use; the zero value holds no engine.
type Switch struct {
	cur atomic.Pointer[Engine]
}

// NewSwitch returns a Switch holding e.
func NewSwitch(e *Engine) *Switch {
	s := &Switch{}
	s.cur.Store(e)
	return s
}

// Engine returns the engine new sessions use (nil: none stored).
func (s *Switch) Engine() *Engine { return s.cur.Load() }

// Store makes e the engine of new sessions and retires the one it
// replaces (if any, and not e itself).
func (s *Switch) Store(e *Engine) {
	if old := s.cur.Swap(e); old != nil && old != e {
		old.Retire()
	}
}

// NewSession starts a session on the current engine (see
// Engine.NewSession).
func (s *Switch) NewSession(id string, log *slog.Logger) *Session {
	return s.cur.Load().NewSession(id, log)
}

// Retire retires the current engine (the process is stopping): its idle
// backend connections close, and those of open sessions when they end.
func (s *Switch) Retire() {
	if e := s.cur.Load(); e != nil {
		e.Retire()
	}
}
