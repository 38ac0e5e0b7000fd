// engine.go: the Engine (the configured chain) and the per-MTA-session
// Session that drives the backend sessions.
//
// Tunables (Engine fields) and defaults:
//   Parallel    false: content phase serial (later backends see earlier edits)
//   MaxMessage, SpoolMemory, MemoryBudget, SpoolDir: see spool.go

package pmult

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/mailmux/mailmux/internal/spool"
)

// Engine is the configured chain of backends. It is safe for concurrent
// use; each MTA session gets its own Session.
type Engine struct {
	Slots []Slot
	// Parallel runs the content phase of every backend on the original
	// message and merges their edits in chain order. By default the phase
	// is serial: each modifying backend sees the edits of those before it;
	// backends that cannot modify run in parallel with the first one.
	Parallel bool
	// MaxMessage, when positive, is the largest message (header and body
	// bytes) the engine lets through: a bigger one gets 552 5.3.4 at EOM.
	// 0: no limit of the engine's.
	MaxMessage int
	// SpoolMemory is how many bytes of a message kept for serial replay
	// stay in memory; the rest goes to a file in SpoolDir. 0: the default
	// (DefaultSpoolMemory); negative: none, every byte to the file.
	SpoolMemory int
	// MemoryBudget bounds the bytes in memory of the messages of all the
	// engine's sessions; beyond it they spill to files too. 0: the default
	// (DefaultMemoryBudget); negative: nothing in memory.
	MemoryBudget int64
	// SpoolDir is where spool files are created; "": os.TempDir().
	SpoolDir string
	Log      *slog.Logger

	metricsOnce sync.Once
	metrics     *Metrics
	budgetOnce  sync.Once
	budget      *spool.Budget
	bigActive   atomic.Int32 // messages of bigMessage bytes or more in progress
	releasing   atomic.Bool  // a handBack is running
	release     func()       // hands memory back (tests); nil: debug.FreeOSMemory
}

// Metrics returns the engine's counters.
func (e *Engine) Metrics() *Metrics {
	e.metricsOnce.Do(func() { e.metrics = newMetrics(len(e.Slots)) })
	return e.metrics
}

// BackendNames returns the backends' names in chain order.
func (e *Engine) BackendNames() []string {
	out := make([]string, len(e.Slots))
	for i, sl := range e.Slots {
		out[i] = sl.Backend.Name()
	}
	return out
}

// Retire tells every backend that keeps resources across sessions that
// the engine has been replaced (a reload) or the process is stopping: idle
// connections close now, and those of sessions still open close when they
// end instead of being kept.
func (e *Engine) Retire() {
	for _, sl := range e.Slots {
		if r, ok := sl.Backend.(Retirer); ok {
			r.Retire()
		}
	}
}

// NewSession starts the engine side of one MTA session. id names it in logs.
func (e *Engine) NewSession(id string, log *slog.Logger) *Session {
	if log == nil {
		log = e.Log
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{e: e, base: log, log: log, id: id, m: e.Metrics()}
	s.m.sessions.Add(1)
	s.m.active.Add(1)
	s.bs = make([]*bstate, len(e.Slots))
	for i, sl := range e.Slots {
		s.bs[i] = &bstate{slot: sl, name: sl.Backend.Name(), mc: s.m.backend(i)}
	}
	return s
}

// bstate is one backend within one session.
type bstate struct {
	slot     Slot
	name     string
	sess     BackendSession
	caps     Caps
	dead     bool    // failed or never opened: no more events
	vote     Verdict // sticky vote cast after a failure
	doneConn bool    // accepted at CONNECT/HELO: done for the connection
	doneMsg  bool    // accepted within a message: done for this message
	inMsg    bool    // got MAIL since the last ABORT
	skip     Kind    // answered Skip to this kind; cleared by another kind
	replay   bool    // gets the content phase by replay at EOM
	mc       *backendCounters
}

func (b *bstate) modifies() bool {
	return !b.slot.Policy.Evaluate && b.caps.Actions&ActModify != 0
}

type result struct {
	r   Reply
	err error
}

// Session is the engine side of one MTA session. Its methods must be
// called from one goroutine (the front end's), in protocol order.
type Session struct {
	e    *Engine
	m    *Metrics
	id   string
	base *slog.Logger
	log  *slog.Logger
	qid  string

	bs    []*bstate
	offer Offer
	neg   Negotiated
	res   []result
	await []bool
	tgt   []*bstate

	parallelHeaderEdits bool // parallel mode with several header editors
	needReplay          bool
	connDiscard         bool   // a DISCARD at CONNECT/HELO, applied at MAIL
	connDiscardFrom     string // the backend that said it

	hdr       headerModel
	final     Reply                // terminal verdict reached in the content phase
	cmacros   [numKinds][]MacroSet // last macros of content kinds, for replay
	closeOnce sync.Once

	// The message as kept for replay, and memory to hand back (spool.go).
	msg         message
	handBackDue bool
}

// Negotiated returns the merged negotiation (valid after Open).
func (s *Session) Negotiated() Negotiated { return s.neg }

// Open connects to every backend in parallel and negotiates with each,
// offering what the MTA offered. A backend that cannot be opened is
// logged and casts its failure action from the first event on.
func (s *Session) Open(ctx context.Context, offer Offer, progress func()) Negotiated {
	s.offer = offer
	s.hdr.noHidden = offer.NoHiddenHeader
	if progress == nil {
		progress = func() {}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.bs))
	for i, b := range s.bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info := OpenInfo{Offer: offer, Progress: progress, Log: s.log.With("backend", b.name)}
			sess, err := b.slot.Backend.Open(ctx, info)
			if err != nil {
				errs[i] = err
				return
			}
			b.sess = sess
			b.caps = sess.Caps()
			// A backend may only make the edits the MTA can carry out;
			// checkEdits refuses the others.
			b.caps.Actions &= offer.Actions
		}()
	}
	wg.Wait()
	for i, b := range s.bs {
		if errs[i] != nil {
			s.failed(b, KindNone, errs[i])
		}
	}
	s.roles()
	s.neg = s.negotiate()
	return s.neg
}

// roles decides which backends see the content phase live and which by
// replay at end of message.
func (s *Session) roles() {
	first := true
	editors := 0
	for _, b := range s.bs {
		if b.dead {
			continue
		}
		if b.caps.Actions&(ActAddHeaders|ActChangeHeaders) != 0 && !b.slot.Policy.Evaluate {
			editors++
		}
		if s.e.Parallel || !b.modifies() {
			continue
		}
		if first {
			first = false
			continue
		}
		b.replay = true
		s.needReplay = true
	}
	s.parallelHeaderEdits = s.e.Parallel && editors > 1
}

func (s *Session) negotiate() Negotiated {
	n := Negotiated{Macros: map[Kind][]string{}}
	var wanted KindSet
	replyNeeded := KindSet(0)
	for _, b := range s.bs {
		if b.dead {
			continue
		}
		if !b.slot.Policy.Evaluate {
			n.Actions |= b.caps.Actions & s.offer.Actions
		}
		for k := KindConnect; k < numKinds; k++ {
			if b.caps.NoEvent.Has(k) {
				continue
			}
			wanted = wanted.With(k)
			live := !b.replay || k.Envelope()
			if live && !b.caps.NoReply.Has(k) {
				replyNeeded = replyNeeded.With(k)
			}
		}
		if b.caps.RejectedRcpts && s.offer.RejectedRcpts {
			n.RejectedRcpts = true
		}
		for k, list := range b.caps.Macros {
			n.Macros[k] = union(n.Macros[k], list)
		}
	}
	for _, b := range s.bs {
		if b.dead && b.vote.Objects() {
			// It failed at open: its vote goes out at the first event,
			// so the MTA must read the engine's replies.
			replyNeeded = ^KindSet(0)
		}
	}
	if s.needReplay || s.parallelHeaderEdits {
		wanted = wanted.With(KindHeader).With(KindEOH)
	}
	if s.needReplay {
		wanted = wanted.With(KindBody)
	}
	for _, k := range []Kind{KindConnect, KindHelo, KindMail, KindRcpt, KindData, KindHeader,
		KindEOH, KindBody, KindUnknown} {
		if !wanted.Has(k) {
			n.NoEvent = n.NoEvent.With(k)
		}
		if s.offer.NoReply.Has(k) && !replyNeeded.Has(k) {
			n.NoReply = n.NoReply.With(k)
		}
	}
	if len(n.Macros) > 0 && s.offer.SymList {
		n.Actions |= ActSetSymList
	} else {
		n.Macros = nil
	}
	return n
}

func union(have []string, list string) []string {
	for _, name := range splitFields(list) {
		dup := false
		for _, h := range have {
			if h == name {
				dup = true
				break
			}
		}
		if !dup {
			have = append(have, name)
		}
	}
	return have
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		sep := i == len(s) || s[i] == ' ' || s[i] == ',' || s[i] == '\t'
		if sep && start >= 0 {
			out = append(out, s[start:i])
			start = -1
		} else if !sep && start < 0 {
			start = i
		}
	}
	return out
}

// failed drops a backend from the session and records its failure vote.
func (s *Session) failed(b *bstate, k Kind, err error) {
	act := b.slot.Policy.OnFailure
	stage := k.String()
	if k == KindNone {
		stage = "open"
	}
	if errors.Is(err, ErrDown) {
		b.mc.skipped.Add(1)
		s.log.Debug("backend skipped", "backend", b.name, "err", err, "action", act.String())
		if !b.slot.Policy.Evaluate {
			b.vote = act.verdict()
		}
	} else if b.slot.Policy.Evaluate {
		s.log.Warn("backend failed (evaluation mode: no effect)", "backend", b.name, "stage", stage, "err", err)
	} else {
		b.mc.failures[k].Add(1)
		s.log.Warn("backend failed, dropped from session", "backend", b.name, "stage", stage,
			"err", err, "action", act.String())
		b.vote = act.verdict()
	}
	b.dead = true
	if b.sess != nil {
		sess := b.sess
		b.sess = nil
		go sess.Close() // it may be hung: do not wait for it
	}
}

// Close ends every backend session (QUIT). It is safe to call twice.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.m.active.Add(-1)
		s.resetMessage()
		var wg sync.WaitGroup
		for _, b := range s.bs {
			if b.sess == nil {
				continue
			}
			sess := b.sess
			b.sess = nil
			wg.Add(1)
			go func() { defer wg.Done(); sess.Close() }()
		}
		wg.Wait()
	})
}
