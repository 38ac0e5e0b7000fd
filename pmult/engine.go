// engine.go: the Engine (the configured chain) and the per-MTA-session
// Session that drives the backend sessions.
//
// Tunables (Engine fields) and defaults:
//   Parallel      false: content phase serial (later backends see earlier edits)
//   OpenTimeout   10 s: budget of Session.Open (every backend negotiated by then)
//   ReadOnlyLive  false: read-only backends after an editor get the content
//                 by replay, in chain order (they see earlier edits)
//   ChainMerge    false: the strongest verdict wins; true: the first
//                 objection in configured order wins (the MTA's chain)
//   MaxMessage, SpoolMemory, MemoryBudget, Budget, SpoolDir: see spool.go
//   QuietDecisions, Records: see record.go

package pmult

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/internal/arena"
	"github.com/mailmux/mailmux/internal/spool"
)

// DefaultOpenTimeout is the default open budget: below Postfix's
// milter_command_timeout (30 s), which would fail pmult as a whole.
const DefaultOpenTimeout = 10 * time.Second

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
	// OpenTimeout is the budget of Session.Open and of the reopen after
	// QUIT_NC (0: DefaultOpenTimeout): backends not negotiated by then
	// fail for the session. It must stay below the MTA's command timeout.
	OpenTimeout time.Duration
	// ReadOnlyLive lets read-only backends see the content phase live,
	// in parallel with the first editor, even after an editor: faster,
	// but they see the original message, not the earlier edits. By
	// default a read-only backend after an editor (in configured order)
	// gets the content by replay at end of message, as in the MTA's chain.
	ReadOnlyLive bool
	// ChainMerge makes the first objection in configured order win at
	// every stage (the MTA's chain); by default the strongest verdict
	// wins (discard > reject > shutdown > tempfail; ties: configured order).
	ChainMerge bool
	// SpoolMemory is how many bytes of a message kept for serial replay
	// stay in memory; the rest goes to a file in SpoolDir. 0: the default
	// (DefaultSpoolMemory); negative: none, every byte to the file.
	SpoolMemory int
	// MemoryBudget bounds the bytes in memory of the messages of all the
	// engine's sessions; beyond it they spill to files too. 0: the default
	// (DefaultMemoryBudget); negative: nothing in memory.
	MemoryBudget int64
	// Budget, when set, is the memory budget the engine's sessions share
	// with the process's other engines and front ends (see NewBudget);
	// MemoryBudget is then not used. nil: the engine's own, of MemoryBudget.
	Budget *Budget
	// SpoolDir is where spool files are created; "": os.TempDir().
	SpoolDir string
	Log      *slog.Logger
	// Counters is where the engine's sessions count: the process's, shared
	// across reloads (see Switch). nil: counters of the engine's own, made
	// at first use.
	Counters *Metrics
	// Macros are the macro translation tables (macrotable.go); nil:
	// none, the macros pass as the MTA sent them.
	Macros *MacroTables
	// QuietDecisions turns the decision line (one info line per message,
	// see record.go) off; false (default): logged.
	QuietDecisions bool
	// Records is where each message's decision record is kept for `pmult
	// why`: the process's ring, shared across reloads. nil: not kept.
	Records *Recorder

	metricsOnce sync.Once
	metrics     *Metrics
	slotMetrics []*backendCounters // by slot, from metrics
	budgetOnce  sync.Once
	budget      *spool.Budget
	bigActive   atomic.Int32 // messages of bigMessage bytes or more in progress
	releasing   atomic.Bool  // a handBack is running
	release     func()       // hands memory back (tests); nil: debug.FreeOSMemory
	recPool     sync.Pool    // of *recBufs: decision record buffers of closed sessions
	memo        capsMemo     // each backend's last negotiated Caps (cond.go: deferred open)
	assignOnce  sync.Once
	assignBy    [][]string // by slot: the macros the slots before it may set (assign.go)
}

func (e *Engine) openTimeout() time.Duration {
	if e.OpenTimeout > 0 {
		return e.OpenTimeout
	}
	return DefaultOpenTimeout
}

// Metrics returns the counters the engine counts in: Counters, or its own.
func (e *Engine) Metrics() *Metrics {
	e.metricsOnce.Do(func() {
		e.metrics = e.Counters
		if e.metrics == nil {
			e.metrics = NewMetrics()
		}
		e.slotMetrics = make([]*backendCounters, len(e.Slots))
		for i, sl := range e.Slots {
			e.slotMetrics[i] = e.metrics.forBackend(sl.Backend.Name())
		}
	})
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
	s.tgt = make([]*bstate, 0, len(e.Slots)) // targets: no growing per session
	for i, sl := range e.Slots {
		s.bs[i] = &bstate{slot: sl, name: sl.Backend.Name(), pos: i, mc: e.slotMetrics[i]}
	}
	s.recInit()
	return s
}

// bstate is one backend within one session.
type bstate struct {
	slot     Slot
	name     string
	pos      int // place in the chain
	sess     BackendSession
	pipe     Pipeliner // sess, when it pipelines; nil: it is run in a goroutine
	caps     Caps
	dead     bool    // failed or never opened: no more events
	vote     Verdict // sticky vote cast after a failure
	doneConn bool    // accepted at CONNECT/HELO: done for the connection
	doneMsg  bool    // accepted within a message: done for this message
	inMsg    bool    // got MAIL, and neither ABORT nor an answered EOM since
	eomOK    bool    // its last command was an EOM it answered with continue
	reopen   bool    // closed or failed at QUIT_NC: open again at the next CONNECT
	skip     Kind    // answered Skip to this kind; cleared by another kind
	replay   bool    // gets the content phase by replay at EOM
	cur      *Event  // the event fanout hands it (assign.go: view)
	condOut  bool    // its condition excluded it from the connection (cond.go)
	condConn bool    // its connection condition is true
	condMsg  bool    // its message condition is true for this message
	deferred bool    // its open waits for CONNECT, with remembered caps (cond.go)
	// owed are content events posted ahead to it (a Batcher, the MTA
	// reading no reply) whose answers are not read yet; see settle.
	owed []*Event
	mc   *backendCounters
}

// batcher returns the session as a Batcher, or nil.
func (b *bstate) batcher() Batcher {
	bt, _ := b.pipe.(Batcher)
	return bt
}

func (b *bstate) modifies() bool {
	return !b.slot.Policy.Evaluate && b.caps.Actions&ActModify != 0
}

type result struct {
	r   Reply
	err error
	at  time.Time     // when the answer (or the failure) came
	dur time.Duration // since the event went out
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
	wg    sync.WaitGroup // fanout's (reused: a declared one escapes per event)
	live  []liveAnswer   // eom's, by position (reused, cleared after)
	evs   eventSlab      // replayAhead's events
	owed  []*Event       // replayAhead's events owed an answer (its array kept for the next replay)
	// rewriteMacros' macro set lists and Synth pairs, from arrays (about
	// twenty sets and forty strings a message): lists are kept (cmacros,
	// replay), never reused.
	msets arena.Arena[MacroSet]
	synth arena.Arena[string]

	parallelHeaderEdits bool // parallel mode with several header editors
	needReplay          bool
	progress            func()
	cancels             []context.CancelFunc // of the backends' Open ctx: cancelled at Close
	reopenPending       bool                 // some backends reopen at the next CONNECT
	gone                bool                 // the MTA went away (the session ctx ended)

	facts    Facts // what conditions read (cond.go)
	hasConds bool  // some backend has a condition
	// condClosing: sessions closed by their condition (QUIT), waited
	// for by Close.
	condClosing sync.WaitGroup

	syn synthState // macro tables and synthesis (macrotable.go)
	// Macro assignments of backends (assign.go), the MTA's pairs by
	// stage in scope, and whether a message is in progress.
	asg       []assignment
	vis       []string // visible's scratch
	sent      [numKinds][]string
	inMessage bool
	rc        recorder // the decision record of the message (record.go)

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
// offering what the MTA offered, within the engine's open budget
// (OpenTimeout). A backend that cannot be opened, or is not negotiated
// when the budget runs out, is logged and casts its failure action from
// the first event on.
func (s *Session) Open(ctx context.Context, offer Offer, progress func()) Negotiated {
	s.offer = offer
	s.hdr.noHidden = offer.NoHiddenHeader
	if progress == nil {
		progress = func() {}
	}
	s.progress = progress
	s.condOpen()
	var list []*bstate
	for _, b := range s.bs {
		switch {
		case b.condOut:
		case s.deferOpen(b):
			// Opened at CONNECT unless its condition excludes it there
			// (cond.go); negotiated with the MTA by its known Caps.
			b.reopen, b.deferred = true, true
			s.reopenPending = true
		default:
			list = append(list, b)
		}
	}
	s.open(ctx, list)
	s.roles()
	s.neg = s.negotiate()
	return s.neg
}

// opened is the outcome of one backend's Open.
type opened struct {
	i    int
	sess BackendSession
	err  error
}

// open opens the given backends in parallel and waits for them until the
// open budget runs out or ctx ends. Backends are not trusted to honour the
// deadline: those still opening are failed for the session and their
// sessions, should they arrive, are closed in the background. The ctx of
// the backends' Open calls ends with the Session at the latest.
func (s *Session) open(ctx context.Context, list []*bstate) {
	if len(list) == 0 {
		return
	}
	budget := s.e.openTimeout()
	deadline := time.Now().Add(budget)
	octx, cancel := context.WithCancel(ctx)
	// Backend sessions may live by the ctx of their Open (a milter
	// backend stops its connection when it ends): it ends with the
	// Session, after the sessions are closed.
	s.cancels = append(s.cancels, cancel)
	info := func(b *bstate) OpenInfo {
		return OpenInfo{Offer: s.offer, Deadline: deadline, Progress: s.progress, Log: s.log.With("backend", b.name),
			Assigned: s.e.assignable(b.pos)}
	}
	// Kept sessions first, here: no goroutine and no wait for them.
	var rest []*bstate
	var infos []OpenInfo
	for _, b := range list {
		in := info(b)
		if sess, err := openIdle(octx, b, in); err != nil {
			s.failed(ctx, b, KindNone, err)
		} else if sess != nil {
			s.adopt(b, sess)
		} else {
			rest = append(rest, b)
			infos = append(infos, in)
		}
	}
	list = rest
	if len(list) == 0 {
		return
	}
	ch := make(chan opened, len(list)) // buffered: a late open never blocks
	for i, b := range list {
		info := infos[i]
		go func() {
			o := opened{i: i}
			defer func() {
				if r := recover(); r != nil {
					o.sess, o.err = nil, newPanicError(r)
				}
				ch <- o
			}()
			o.sess, o.err = b.slot.Backend.Open(octx, info)
			if o.err == nil && o.sess == nil {
				o.err = errors.New("open returned no session")
			}
		}()
	}
	timer := time.NewTimer(budget)
	defer timer.Stop()
	got := make([]bool, len(list))
	var late error
	n := 0
	for n < len(list) && late == nil {
		select {
		case o := <-ch:
			n++
			got[o.i] = true
			b := list[o.i]
			if o.err != nil {
				s.failed(ctx, b, KindNone, o.err)
				continue
			}
			s.adopt(b, o.sess)
		case <-timer.C:
			late = fmt.Errorf("not negotiated within open_timeout (%s)", budget)
		case <-ctx.Done():
			late = ctx.Err()
		}
	}
	if n == len(list) {
		return
	}
	go func(left int) {
		for ; left > 0; left-- {
			if o := <-ch; o.sess != nil {
				o.sess.Close()
			}
		}
	}(len(list) - n)
	for i, b := range list {
		if !got[i] {
			s.failed(ctx, b, KindNone, late)
		}
	}
}

// adopt takes a backend's opened session into the Session.
func (s *Session) adopt(b *bstate, sess BackendSession) {
	b.sess = sess
	b.pipe, _ = sess.(Pipeliner)
	b.caps = sess.Caps()
	// A backend may only make the edits the MTA can carry out;
	// checkEdits refuses the others.
	b.caps.Actions &= s.offer.Actions
	s.e.memo.put(b.pos, len(s.bs), s.offer, b.caps)
}

// openIdle is b's OpenIdle where it has one (nil, nil otherwise), a
// panic in it an error.
func openIdle(ctx context.Context, b *bstate, info OpenInfo) (sess BackendSession, err error) {
	io, ok := b.slot.Backend.(IdleOpener)
	if !ok {
		return nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			sess, err = nil, newPanicError(r)
		}
	}()
	return io.OpenIdle(ctx, info), nil
}

// closeIdle is ic's CloseIdle, a panic in it false (Close then runs).
func closeIdle(ic IdleCloser) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return ic.CloseIdle()
}

// roles decides which backends see the content phase live and which by
// replay at end of message. Serial mode: the first editor is live, later
// editors are replayed, and so are read-only backends after an editor
// (unless ReadOnlyLive); read-only backends before the first editor are
// live.
func (s *Session) roles() {
	first := true
	editors := 0
	for _, b := range s.bs {
		b.replay = false
		if b.dead || b.condOut {
			continue
		}
		if b.caps.Actions&(ActAddHeaders|ActChangeHeaders) != 0 && !b.slot.Policy.Evaluate {
			editors++
		}
		if s.e.Parallel {
			continue
		}
		if !b.modifies() {
			if !first && !s.e.ReadOnlyLive {
				b.replay = true
				s.needReplay = true
			}
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
		if b.dead || b.condOut {
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
		if b.deferred && !b.slot.Policy.Evaluate && b.slot.Policy.OnFailure.verdict().Objects() {
			// Opened at CONNECT (deferred): should it fail there, its
			// failure vote goes out at CONNECT.
			replyNeeded = replyNeeded.With(KindConnect)
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
	// Events the engine needs to derive macros (macrotable.go): sent
	// and answered (mtasim waits for an answer whatever it negotiated).
	synth := s.synthEvents()
	wanted |= synth | s.condNeeds()
	replyNeeded |= synth
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
		if s.offer.NoReply.Has(k) && (!replyNeeded.Has(k) || (s.offer.DeferContent && deferred.Has(k))) {
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

// deferred are the events whose verdict the MTA acts on only at the end
// of the message: Postfix (milter8.c, cleanup_milter.c) and Sendmail
// (milter.c, milter_data) report a reject, tempfail or discard given to a
// header, EOH or body chunk at the end of DATA, and stop sending the
// message to the milters. So the engine lets the MTA not wait for these
// replies (its NR_HDR, NR_EOH, NR_BODY) even when backends answer them: a
// backend's verdict is kept (Session.final) and given at end of message,
// where the MTA would have acted on it. What changes is only that the MTA
// sends the whole message, and cannot be told to skip the rest of the
// body (SKIP needs a reply).
const deferred = KindSet(1<<KindHeader | 1<<KindEOH | 1<<KindBody)

func union(have []string, list []string) []string {
	for _, name := range list {
		if !slices.Contains(have, name) {
			have = append(have, name)
		}
	}
	return have
}

// panicError is a panic caught in a backend call.
type panicError struct {
	v     any
	stack string
}

func newPanicError(v any) error { return &panicError{v: v, stack: string(debug.Stack())} }

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// failed drops a backend from the session and records its failure vote.
// When ctx has ended (the MTA went away) it is no failure of the backend:
// the backend is dropped quietly, with one line for the session.
func (s *Session) failed(ctx context.Context, b *bstate, k Kind, err error) {
	act := b.slot.Policy.OnFailure
	stage := k.String()
	if k == KindNone {
		stage = "open"
	}
	var pe *panicError
	switch {
	case ctx.Err() != nil:
		s.wentAway(k)
	case errors.Is(err, ErrDown):
		s.recPolicy("down", b, k, act.String())
		b.mc.skipped.Add(1)
		s.log.Debug("backend skipped", "backend", b.name, "err", err, "action", act.String())
		if !b.slot.Policy.Evaluate {
			b.vote = act.verdict()
		}
	case errors.As(err, &pe):
		s.recPolicy("failure", b, k, act.String())
		b.mc.failures[k].Add(1)
		s.log.Error("backend call panicked, backend dropped from session", "backend", b.name, "stage", stage,
			"panic", fmt.Sprint(pe.v), "action", act.String(), "stack", pe.stack)
		if !b.slot.Policy.Evaluate {
			b.vote = act.verdict()
		}
	case b.slot.Policy.Evaluate:
		s.recPolicy(failPolicy(err), b, k, "none (evaluation)")
		s.log.Warn("backend failed (evaluation mode: no effect)", "backend", b.name, "stage", stage, "err", err)
	default:
		s.recPolicy(failPolicy(err), b, k, act.String())
		b.mc.failures[k].Add(1)
		s.log.Warn("backend failed, dropped from session", "backend", b.name, "stage", stage,
			"err", err, "action", act.String())
		b.vote = act.verdict()
	}
	b.dead = true
	if b.sess != nil {
		sess := b.sess
		b.sess, b.pipe = nil, nil
		go sess.Close() // it may be hung: do not wait for it
	}
}

// Close ends every backend session (QUIT). It is safe to call twice.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.m.active.Add(-1)
		if s.rc.open {
			s.recEnd("quit", Reply{}, KindNone)
		}
		s.recRelease()
		s.resetMessage()
		var wg sync.WaitGroup
		for _, b := range s.bs {
			if b.sess == nil {
				continue
			}
			sess := b.sess
			b.sess, b.pipe = nil, nil
			if ic, ok := sess.(IdleCloser); ok && closeIdle(ic) {
				continue // ended here: no goroutine for it
			}
			wg.Add(1)
			go func() { defer wg.Done(); sess.Close() }()
		}
		wg.Wait()
		s.condClosing.Wait()
		for _, cancel := range s.cancels {
			cancel() // and opens that missed the budget stop
		}
	})
}
