// spool.go: how the engine keeps the message it replays to later backends
// (serial content phase): in memory up to SpoolMemory bytes per message
// and while the engine's MemoryBudget allows, in a spool file beyond
// (internal/spool), so that any message the MTA accepts can be replayed.
// Above MaxMessage, when set, the message is refused for good.
//
// Tunables (Engine fields) and defaults:
//   MaxMessage    0: no limit of pmult's (the MTA's applies); above it 552 5.3.4
//   SpoolMemory   1 MiB of each message in memory (<0: none, file only)
//   MemoryBudget  256 MiB for all sessions of the engine (<0: none);
//                 Budget, when set, instead: one budget shared with the
//                 process's other engines (reloads) and front ends
//   SpoolDir      os.TempDir()
//
// Memory handed back: when the last message of at least bigMessage bytes
// in progress has ended (at its session's next MAIL, ABORT, QUIT_NC or
// close: the EOM reply may still hold a replaced body), the engine returns
// the freed heap to the system (debug.FreeOSMemory, in the background)
// rather than keep it until the runtime's next forced collection (measured
// with bench/memtable: 74 MiB of RSS still held 30 s after ten 30 MiB
// messages, with pmult's GOGC of 400; 10 MiB with the hand-back).

package pmult

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/mailmux/mailmux/internal/spool"
)

// Defaults of the spool tunables.
const (
	DefaultSpoolMemory  = 1 << 20
	DefaultMemoryBudget = 256 << 20
)

// Budget is the memory budget spools share (internal/spool): the bytes
// of messages kept in memory by every holder of it together. A process
// makes one (NewBudget) and hands it to its engines (Engine.Budget) and
// to front ends that hold messages themselves (adapters/smtp), so that
// memory_budget is one ceiling for the process.
type Budget = spool.Budget

// NewBudget returns a budget of limit bytes (<= 0: nothing in memory).
func NewBudget(limit int64) *Budget { return spool.NewBudget(limit) }

// bigMessage is the message size from which the engine hands memory back
// to the system when no such message is left in progress.
const bigMessage = 8 << 20

// Replies of the engine itself about the message store.
var (
	replyTooBig     = Reply{Verdict: Reject, Text: "552 5.3.4 Message too big"}
	replySpoolError = Reply{Verdict: Tempfail, Text: "451 4.3.0 Temporary local problem: cannot keep the message"}
)

// message is what the session keeps of the current message.
type message struct {
	size   int64        // header and body bytes received
	sp     *spool.Spool // the body for replay; nil until the first chunk
	tooBig bool         // size passed MaxMessage: refused at EOM
	big    bool         // size reached bigMessage: counted in Engine.bigActive
}

func (e *Engine) spoolBudget() *spool.Budget {
	e.budgetOnce.Do(func() {
		if e.Budget != nil {
			e.budget = e.Budget
			return
		}
		n := e.MemoryBudget
		if n == 0 {
			n = DefaultMemoryBudget
		}
		e.budget = spool.NewBudget(n)
	})
	return e.budget
}

func (e *Engine) spoolMemory() int {
	if e.SpoolMemory == 0 {
		return DefaultSpoolMemory
	}
	return max(e.SpoolMemory, 0)
}

// keep counts and stores one content event; false: the message is over
// MaxMessage and the event goes no further.
func (s *Session) keep(ev *Event) bool {
	m := &s.msg
	switch ev.Kind {
	case KindHeader:
		m.size += int64(len(ev.Name) + len(ev.Value) + 4)
	case KindBody:
		m.size += int64(len(ev.Chunk))
	}
	if !m.big && m.size >= bigMessage {
		m.big = true
		s.e.bigActive.Add(1)
	}
	if limit := s.e.MaxMessage; limit > 0 && m.size > int64(limit) {
		if !m.tooBig {
			s.log.Warn("message too big, refused at end of message", "limit", limit)
			m.tooBig = true
			if m.sp != nil {
				m.sp.Reset() // not replayed: free it now
			}
		}
		return false
	}
	if ev.Kind != KindBody || !s.needReplay {
		return true
	}
	if m.sp == nil {
		m.sp = spool.New(spool.Config{Memory: s.e.spoolMemory(), Dir: s.e.SpoolDir, Budget: s.e.spoolBudget()})
	}
	spilled, failed := m.sp.Spilled(), m.sp.Err() != nil
	if err := m.sp.Write(ev.Chunk); err != nil {
		if !failed {
			s.log.Error("cannot keep the message for replay, tempfail at end of message", "err", err)
		}
	} else if !spilled && m.sp.Spilled() {
		s.log.Debug("message spilled to disk", "in_memory", m.sp.InMemory(), "budget_used", s.e.spoolBudget().Used())
	}
	return true
}

// storeVerdict is the engine's own verdict at EOM about the kept message:
// too big (552), or it could not be kept (451).
func (s *Session) storeVerdict(ctx context.Context, ev *Event) (Reply, bool) {
	var r Reply
	switch {
	case s.final.Verdict.Objects():
		return Reply{}, false
	case s.msg.tooBig:
		r = replyTooBig
	case s.msg.sp != nil && s.msg.sp.Err() != nil:
		r = replySpoolError
	default:
		return Reply{}, false
	}
	// The backends are in the message: end it for them.
	s.abort(ctx, &Event{Kind: KindAbort})
	return r, true
}

// replayBody sends the kept body to b, chunk by chunk as received.
func (s *Session) replayBody(ctx context.Context, b *bstate, send func([]byte) (Reply, bool)) (Reply, bool) {
	if s.msg.sp == nil {
		return Reply{}, true
	}
	c, ok := Reply{}, true
	err := s.msg.sp.Range(func(chunk []byte) bool {
		if b.skip == KindBody {
			return false
		}
		c, ok = send(chunk)
		return ok
	})
	if err != nil && ok {
		s.failed(ctx, b, KindBody, fmt.Errorf("replay: %w", err))
		return Reply{Verdict: b.vote, From: b.name}, false
	}
	return c, ok
}

// resetMessage forgets the message and hands its memory and file back.
func (s *Session) resetMessage() {
	if s.msg.sp != nil {
		s.msg.sp.Reset()
	}
	switch {
	case s.msg.big:
		// Hand back at the session's next event, not now: at EOM the
		// front end has yet to write the reply (its edits may hold a
		// replaced body).
		s.handBackDue = s.e.bigActive.Add(-1) == 0
	case s.handBackDue:
		s.handBackDue = false
		if s.e.bigActive.Load() == 0 {
			s.e.handBack()
		}
	}
	s.msg = message{}
}

// handBack returns the freed heap to the system, in the background (a
// full collection: not on the session's path); one at a time.
func (e *Engine) handBack() {
	if !e.releasing.CompareAndSwap(false, true) {
		return
	}
	release := e.release
	if release == nil {
		release = debug.FreeOSMemory
	}
	go func() {
		defer e.releasing.Store(false)
		release()
	}()
}
