// session.go: event dispatch and verdict merge for one MTA session.

package pmult

import (
	"context"
	"fmt"
	"time"

	"github.com/mailmux/mailmux/macros"
)

// Handle delivers one event to the backends that should get it and returns
// the merged reply. ABORT, QUIT and QUIT_NC return Continue (the MTA reads
// no reply for them).
func (s *Session) Handle(ctx context.Context, ev *Event) Reply {
	s.rewriteMacros(ev)
	s.noteSent(ev)
	if ev.Kind == KindConnect {
		s.endAssignments(true)
	}
	s.noteMacros(ev)
	s.condFacts(ev)
	if ev.Kind == KindConnect {
		s.m.listenerSession(s.offer.Listener)
	}
	if s.reopenPending && ev.Kind != KindQuit && ev.Kind != KindQuitNC && ev.Kind != KindAbort {
		s.reopen(ctx)
	}
	var r Reply
	switch ev.Kind {
	case KindConnect, KindHelo, KindMail, KindRcpt, KindData, KindUnknown:
		r = s.envelope(ctx, ev)
		s.noteRcpt(ev, r)
		s.condRcptRefused(ev, r)
	case KindHeader, KindEOH, KindBody:
		r = s.content(ctx, ev)
	case KindEOM:
		r = s.eom(ctx, ev)
	case KindAbort:
		s.abort(ctx, ev)
		if s.rc.open {
			s.recEnd("abort", Reply{}, KindNone)
		}
		return r
	case KindQuitNC:
		if s.rc.open {
			s.recEnd("quit", Reply{}, KindNone)
		}
		s.recNewSMTP()
		s.quitNC(ctx, ev)
		return r
	case KindQuit:
		s.Close()
		return r
	default:
		return r
	}
	s.m.replies[ev.Kind][r.Verdict].Add(1)
	s.recReply(ev, r)
	return r
}

// noteMacros follows the MTA's queue id in the logs.
func (s *Session) noteMacros(ev *Event) {
	for _, m := range ev.Macros {
		for i := 0; i+1 < len(m.Pairs); i += 2 {
			if m.Pairs[i] == macros.QueueID && m.Pairs[i+1] != "" {
				s.rc.rec.QueueID = m.Pairs[i+1]
			}
			if m.Pairs[i] == macros.QueueID && m.Pairs[i+1] != "" && m.Pairs[i+1] != s.qid {
				s.qid = m.Pairs[i+1]
				s.log = s.base.With("qid", s.qid)
			}
		}
	}
}

// catch turns a panic in a backend call into the call's error; deferred
// by the callers below.
func catch(err *error) {
	if r := recover(); r != nil {
		*err = newPanicError(r)
	}
}

func (b *bstate) handle(ctx context.Context, ev *Event) (r Reply, err error) {
	defer catch(&err)
	return b.sess.Handle(ctx, ev)
}

func (b *bstate) post(ctx context.Context, ev *Event) (answer bool, err error) {
	defer catch(&err)
	return b.pipe.Post(ctx, ev)
}

func (b *bstate) await(ctx context.Context, ev *Event) (r Reply, err error) {
	defer catch(&err)
	return b.pipe.Await(ctx, ev)
}

// fanout sends ev to every target at once and waits for all answers.
// Envelope and content events are posted to every pipelining backend
// first and the answers read after, so those backends work in parallel
// with no goroutine per backend; backends that do not pipeline get the
// event through Handle, each in a goroutine of its own (at most one per
// target, all ended before fanout returns), while the pipelined answers
// are read. End of message (long, with PROGRESS to relay as it comes)
// uses one goroutine per backend.
func (s *Session) fanout(ctx context.Context, targets []*bstate, ev *Event) []result {
	if cap(s.res) < len(targets) {
		s.res = make([]result, len(targets))
	}
	res := s.res[:len(targets)]
	for _, b := range targets {
		b.cur = s.view(b, ev) // ev, or its copy with the macros earlier backends set
	}
	defer func() {
		for _, b := range targets {
			b.cur = nil
		}
	}()
	t0 := time.Now()
	for i := range res {
		res[i] = result{at: t0}
	}
	switch {
	case len(targets) == 0:
	case len(targets) == 1:
		res[0].r, res[0].err = targets[0].handle(ctx, targets[0].cur)
		res[0].done()
	case ev.Kind == KindEOM:
		for i := 1; i < len(targets); i++ {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				res[i].r, res[i].err = targets[i].handle(ctx, targets[i].cur)
				res[i].done()
			}()
		}
		res[0].r, res[0].err = targets[0].handle(ctx, targets[0].cur)
		res[0].done()
		s.wg.Wait()
	default:
		if cap(s.await) < len(targets) {
			s.await = make([]bool, len(targets))
		}
		await := s.await[:len(targets)]
		// Without a pipelining target, one synchronous backend runs on
		// this goroutine, after the others have started.
		inline := -1
		for i, b := range targets {
			if b.pipe != nil {
				inline = -1
				break
			}
			if inline < 0 {
				inline = i
			}
		}
		for i, b := range targets {
			await[i] = false
			switch {
			case b.pipe != nil:
				await[i], res[i].err = b.post(ctx, b.cur)
				if !await[i] || res[i].err != nil {
					res[i].done()
				}
			case i != inline:
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					res[i].r, res[i].err = b.handle(ctx, b.cur)
					res[i].done()
				}()
			}
		}
		if inline >= 0 {
			res[inline].r, res[inline].err = targets[inline].handle(ctx, targets[inline].cur)
			res[inline].done()
		}
		for i, b := range targets {
			if await[i] && res[i].err == nil {
				if ctx.Err() != nil {
					res[i].err = ctx.Err()
					res[i].done()
					continue
				}
				res[i].r, res[i].err = b.await(ctx, b.cur)
				res[i].done()
			}
		}
		s.wg.Wait()
	}
	return res
}

// done notes the time of the answer (or failure): r.at was when the
// event went out.
func (r *result) done() {
	now := time.Now()
	r.dur = now.Sub(r.at)
	r.at = now
}

// targets collects the live backends that get ev.
func (s *Session) targets(ev *Event, content bool) []*bstate {
	t := s.tgt[:0]
	msg := ev.Kind != KindConnect && ev.Kind != KindHelo && ev.Kind != KindUnknown
	for _, b := range s.bs {
		if b.dead || b.doneConn || (msg && b.doneMsg) {
			continue
		}
		if content && b.replay {
			continue
		}
		if b.skip != KindNone && b.skip != ev.Kind {
			b.skip = KindNone
		}
		if b.skip == ev.Kind {
			continue
		}
		if ev.Kind == KindRcpt && ev.RejectedRcpt && !b.caps.RejectedRcpts {
			continue
		}
		t = append(t, b)
	}
	s.tgt = t
	return t
}

// vote records one backend's answer to ev and returns the verdict it casts.
func (s *Session) vote(ctx context.Context, b *bstate, ev *Event, r result) Reply {
	b.eomOK = false
	b.mc.lat[ev.Kind].observe(r.dur)
	s.recAnswer(b, ev.Kind, &r)
	if r.err == nil {
		s.noteReply(b, ev.Kind, &r.r)
		r.r.Macros, r.r.Notes = nil, nil
	}
	if r.err == nil && r.r.Verdict == Discard && (ev.Kind == KindConnect || ev.Kind == KindHelo) {
		// No message to discard yet. Postfix 3.7 logs "DISCARD action is
		// not allowed for connect or helo" and goes on as if the milter
		// had said continue (milter8.c: its default reply is null while
		// the milter is healthy); the engine does the same, rather than
		// discarding every message of the connection.
		b.mc.replies[ev.Kind][Discard].Add(1)
		s.recPolicy("discard_ignored", b, ev.Kind, "continue")
		s.log.Warn("backend answered DISCARD at connect or helo, where it is not allowed: ignored, as Postfix does",
			"backend", b.name, "stage", ev.Kind.String())
		return Reply{}
	}
	if r.err != nil {
		s.failed(ctx, b, ev.Kind, r.err)
		return Reply{Verdict: b.vote, From: b.name}
	}
	rep := r.r
	if int(rep.Verdict) < numVerdicts {
		b.mc.replies[ev.Kind][rep.Verdict].Add(1)
	}
	if ev.Kind == KindEOM {
		// The message ends here for the backend: the ABORT the MTA sends
		// after every message is not for it (libmilter ignores it, and
		// falls back to a state where it ignores QUIT_NC).
		b.inMsg = false
		b.eomOK = rep.Verdict == Continue
	}
	switch rep.Verdict {
	case Accept:
		if ev.Kind == KindConnect || ev.Kind == KindHelo {
			b.doneConn = true
		} else {
			b.doneMsg = true
		}
		return Reply{}
	case Skip:
		if b.caps.Skip {
			b.skip = ev.Kind
		}
		return Reply{}
	case Continue:
		return Reply{}
	}
	if b.slot.Policy.Evaluate {
		s.recPolicy("would", b, ev.Kind, rep.Verdict.String())
		s.log.Info("evaluation: backend would have answered", "backend", b.name, "stage", ev.Kind.String(),
			"verdict", rep.Verdict.String(), "text", rep.Text)
		// Not applied, but the backend believes it was: like an MTA, send
		// it nothing more of what that verdict ended. libmilter silently
		// ignores (never answers) the message's later commands after a
		// reject, tempfail or discard at any stage but RCPT and UNKNOWN.
		switch ev.Kind {
		case KindRcpt, KindUnknown:
		case KindConnect, KindHelo:
			b.doneConn = true
		default:
			b.doneMsg = true
		}
		return Reply{}
	}
	rep.From = b.name
	return rep
}

// merger picks the verdict of one stage among the backends' votes: by
// default the strongest (ties: the earlier backend in configured order),
// with ChainMerge the first objection in configured order.
type merger struct {
	chain bool
	best  Reply
	pos   int // chain position of best; -1: nothing objects yet
}

func (s *Session) merger() merger { return merger{chain: s.e.ChainMerge, pos: -1} }

func (m *merger) add(pos int, c Reply) {
	if !c.Verdict.Objects() {
		return
	}
	if m.pos < 0 {
		m.best, m.pos = c, pos
		return
	}
	a, b := c.Verdict.rank(), m.best.Verdict.rank()
	if (m.chain && pos < m.pos) || (!m.chain && (a > b || a == b && pos < m.pos)) {
		m.best, m.pos = c, pos
	}
}

func (m *merger) objects() bool { return m.pos >= 0 }

// sticky adds the votes of failed backends.
func (s *Session) sticky(m *merger) {
	for _, b := range s.bs {
		if b.dead && b.vote.Objects() {
			m.add(b.pos, Reply{Verdict: b.vote, From: b.name})
		}
	}
}

func (s *Session) allDone(msg bool) bool {
	for _, b := range s.bs {
		if b.dead {
			if b.vote.Objects() {
				return false
			}
			continue
		}
		if !b.doneConn && !(msg && b.doneMsg) {
			return false
		}
	}
	return true
}

func (s *Session) envelope(ctx context.Context, ev *Event) Reply {
	s.settle(ctx) // nothing owed in protocol order (ABORT or EOM came first)
	switch ev.Kind {
	case KindConnect:
		s.recConnect(ev)
	case KindMail:
		s.recMail(ev)
	}
	if ev.Kind == KindMail {
		s.startMessage()
		for _, b := range s.bs {
			b.doneMsg = false
			// Backends done for the connection are not in the message.
			b.inMsg = !b.dead && !b.doneConn
			b.condMsg = false
		}
		s.inMessage = true
	}
	s.condCheck(ctx, ev, false)
	targets := s.targets(ev, false)
	m := s.merger()
	first, later := waves(targets, ev.Kind)
	res := s.fanout(ctx, first, ev)
	for i, b := range first {
		m.add(b.pos, s.vote(ctx, b, ev, res[i]))
	}
	if len(later) > 0 {
		// Those that wait: their conditions now, with what the first
		// wave set, then the event.
		s.condCheck(ctx, ev, true)
		later = stillIn(later, ev.Kind)
		res = s.fanout(ctx, later, ev)
		for i, b := range later {
			m.add(b.pos, s.vote(ctx, b, ev, res[i]))
		}
	}
	s.sticky(&m)
	best := m.best
	if best.Verdict == Discard && (ev.Kind == KindConnect || ev.Kind == KindHelo) {
		// Only a failure vote (on_failure = discard) gets here: no message
		// to discard yet; the sticky vote discards each one at MAIL.
		best = Reply{}
	}
	if !best.Verdict.Objects() && s.allDone(ev.Kind != KindConnect && ev.Kind != KindHelo) {
		best.Verdict = Accept
	}
	if best.Verdict.Objects() {
		s.log.Debug("verdict", "stage", ev.Kind.String(), "verdict", best.Verdict.String(), "backend", best.From)
	}
	return best
}

func (s *Session) startMessage() {
	s.hdr.reset()
	s.resetMessage()
	s.endAssignments(false)
	s.inMessage = false
	s.final = Reply{}
	for i := range s.cmacros {
		s.cmacros[i] = nil
	}
}

func (s *Session) content(ctx context.Context, ev *Event) Reply {
	if ev.Macros != nil {
		s.cmacros[ev.Kind] = ev.Macros
	}
	if ev.Kind == KindHeader {
		s.hdr.received(ev.Name, ev.Value)
	}
	if s.final.Verdict.Objects() {
		return s.final
	}
	s.condCheck(ctx, ev, false)
	if !s.keep(ev) {
		return Reply{}
	}
	targets := s.targets(ev, true)
	m := s.merger()
	if s.neg.NoReply.Has(ev.Kind) {
		targets = s.postAhead(ctx, targets, ev, &m)
	}
	res := s.fanout(ctx, targets, ev)
	for i, b := range targets {
		m.add(b.pos, s.vote(ctx, b, ev, res[i]))
	}
	s.sticky(&m)
	best := m.best
	if best.Verdict.Objects() {
		s.final = best
		return best
	}
	if ev.Kind == KindBody && s.offer.Skip && !s.needReplay && len(targets) > 0 {
		all := true
		for _, b := range targets {
			if !b.dead && b.skip != KindBody && !b.doneMsg {
				all = false
			}
		}
		if all {
			return Reply{Verdict: Skip}
		}
	}
	return best
}

// postAhead posts ev, a content event the MTA reads no reply to, to
// every target that batches, without waiting for the answers (settle
// reads them before the next event that needs them), and returns the
// other targets. A failed post votes into m.
func (s *Session) postAhead(ctx context.Context, targets []*bstate, ev *Event, m *merger) []*bstate {
	rest := targets[:0]
	var t0 time.Time // for a failed post's latency; the posts take microseconds
	for _, b := range targets {
		bt := b.batcher()
		if bt == nil {
			rest = append(rest, b)
			continue
		}
		bt.Hold()
		if t0.IsZero() {
			t0 = time.Now()
		}
		v := s.view(b, ev) // ev, or its copy with the macros earlier backends set
		answer, err := b.post(ctx, v)
		if err != nil {
			at := time.Now()
			m.add(b.pos, s.vote(ctx, b, ev, result{err: err, at: at, dur: at.Sub(t0)}))
			continue
		}
		if answer {
			if b.owed == nil {
				b.owed = make([]*Event, 0, 16) // a message's content at once
			}
			b.owed = append(b.owed, v)
		}
	}
	return rest
}

// settle reads the answers owed for content events posted ahead, in
// order, voting each as if it had come at once; a backend's answers stop
// at the first that ends the message for it (it ignores the rest, see
// Batcher). An objection becomes the message's verdict (final), given at
// end of message, where the MTA acts on it.
func (s *Session) settle(ctx context.Context) {
	m := s.merger()
	owed := false
	// Every batch goes out before any answer is awaited: the backends
	// work in parallel.
	for _, b := range s.bs {
		if len(b.owed) > 0 && b.pipe != nil {
			if err := b.batcher().Flush(); err != nil {
				at := time.Now()
				m.add(b.pos, s.vote(ctx, b, b.owed[0], result{err: err, at: at}))
				b.owed = forget(b.owed)
			}
		}
	}
	for _, b := range s.bs {
		if len(b.owed) == 0 {
			continue
		}
		owed = true
		evs := b.owed
		// Each answer's latency is from the previous one: they were
		// asked for at once.
		t0 := time.Now()
		for _, ev := range evs {
			if b.dead || b.pipe == nil {
				break
			}
			r, err := b.await(ctx, ev)
			at := time.Now()
			c := s.vote(ctx, b, ev, result{r: r, err: err, at: at, dur: at.Sub(t0)})
			t0 = at
			m.add(b.pos, c)
			if c.Verdict.Objects() || b.doneMsg || b.dead {
				break
			}
		}
		b.owed = forget(evs)
	}
	if !owed && !m.objects() {
		return
	}
	s.sticky(&m)
	if m.objects() && !s.final.Verdict.Objects() {
		s.final = m.best
	}
}

// forget empties a list of owed events, keeping its memory for the next.
func forget(evs []*Event) []*Event {
	clear(evs)
	return evs[:0]
}

func (s *Session) abort(ctx context.Context, ev *Event) {
	s.settle(ctx) // the answers come before the ABORT is read
	for _, b := range s.bs {
		if b.dead || b.doneConn || !b.inMsg {
			continue
		}
		b.inMsg = false
		b.doneMsg = false
		b.skip = KindNone
		b.eomOK = false
		if _, err := b.handle(ctx, ev); err != nil {
			s.failed(ctx, b, ev.Kind, err)
		}
	}
	s.startMessage()
}

// quitNC ends the SMTP session; a new one follows on the same MTA
// connection. Only a backend whose last command was an end of message it
// answered with continue, and whose protocol has QUIT_NC (v6), gets it and
// serves the next session: libmilter ignores QUIT_NC in any other state
// (and then the next CONNECT, never answering). Every other backend is
// closed (QUIT), failed ones included, and opened again at the next
// CONNECT. Every backend's state (failure votes, ACCEPTs) is reset: it was
// for the old session.
func (s *Session) quitNC(ctx context.Context, ev *Event) {
	for _, b := range s.bs {
		keep := !b.dead && b.sess != nil && b.eomOK && b.caps.QuitNC
		if keep {
			if _, err := b.handle(ctx, ev); err != nil {
				s.failed(ctx, b, ev.Kind, err)
				keep = false
			}
		}
		if !keep && b.sess != nil {
			sess := b.sess
			go sess.Close()
		}
		nb := bstate{slot: b.slot, name: b.name, pos: b.pos, caps: b.caps, replay: b.replay, mc: b.mc}
		if keep {
			nb.sess, nb.pipe = b.sess, b.pipe
		} else {
			nb.reopen = true
			s.reopenPending = true
		}
		*b = nb
	}
	s.endAssignments(true)
	s.startMessage()
}

// reopen opens the backends closed at QUIT_NC, and those whose open was
// deferred to CONNECT (cond.go), at the first event of the new SMTP
// session (Backend.Open, which honours the breaker; within the open
// budget). A backend whose connection condition is already false is not
// opened. The MTA side of the connection stays as negotiated: a backend
// opened here that needs more than it carries fails for the session (see
// fits).
func (s *Session) reopen(ctx context.Context) {
	s.reopenPending = false
	var list []*bstate
	for _, b := range s.bs {
		if b.reopen {
			b.reopen = false
			if s.listenerOut(b) {
				b.condOut, b.doneConn = true, true
				continue
			}
			if s.connectOut(b) {
				b.deferred = false
				s.condNotOpened(b, s.facts.At)
				continue
			}
			list = append(list, b)
		}
	}
	// A backend whose open was deferred keeps the role (live or
	// replayed) negotiated from its remembered caps unless it now
	// negotiated other actions; after QUIT_NC the roles are decided again.
	again := false
	prev := make([]Actions, len(list))
	for i, b := range list {
		prev[i] = b.caps.Actions
		again = again || !b.deferred
	}
	s.open(ctx, list)
	for i, b := range list {
		again = again || (!b.dead && b.caps.Actions != prev[i])
		b.deferred = false
	}
	if again {
		s.roles()
	}
	refit := false
	for _, b := range list {
		if b.dead {
			continue
		}
		if err := s.fits(b); err != nil {
			s.failed(ctx, b, KindNone, err)
			refit = true
		}
	}
	if refit {
		s.roles()
	}
}

// fits checks that a backend opened after the negotiation with the MTA
// (reopened after QUIT_NC, or opened at CONNECT with the Caps it had
// before) can be served by the connection's negotiation, fixed at its start: the actions
// it negotiated must be among those negotiated with the MTA, the events it
// wants (those its role needs, replay included) among those the MTA
// sends, and the events it answers live among those the MTA reads replies
// for. It is not restricted silently: an edit or a vote the MTA would not
// carry out is a difference from the chain, so it fails with a clear line.
func (s *Session) fits(b *bstate) error {
	var problems []string
	if !b.slot.Policy.Evaluate {
		if extra := b.caps.Actions &^ s.neg.Actions &^ ActSetSymList; extra != 0 {
			problems = append(problems, fmt.Sprintf("actions %#x not negotiated with the MTA", uint32(extra)))
		}
	}
	for _, k := range []Kind{KindConnect, KindHelo, KindMail, KindRcpt, KindData, KindHeader,
		KindEOH, KindBody, KindUnknown} {
		wants := !b.caps.NoEvent.Has(k) || (b.replay && (k == KindHeader || k == KindEOH || k == KindBody))
		if wants && s.neg.NoEvent.Has(k) {
			problems = append(problems, fmt.Sprintf("wants %s events, which the MTA does not send", k))
		}
		live := !b.replay || k.Envelope()
		if live && !(s.offer.DeferContent && deferred.Has(k)) && !b.caps.NoEvent.Has(k) && !b.caps.NoReply.Has(k) && s.neg.NoReply.Has(k) {
			problems = append(problems, fmt.Sprintf("answers %s events, for which the MTA reads no reply", k))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("opened after the MTA negotiation (at CONNECT or after QUIT_NC) with capabilities the MTA connection did not negotiate: %v", problems)
}

// checkEdits refuses edits a backend did not negotiate.
func checkEdits(b *bstate, edits []Edit) error {
	for _, e := range edits {
		if need := e.Kind.Need(); b.caps.Actions&need == 0 {
			return fmt.Errorf("protocol violation: %s edit without the negotiated action", e.Kind)
		}
	}
	return nil
}

// wentAway logs, once, that the MTA session ended under the engine.
func (s *Session) wentAway(k Kind) {
	if !s.gone {
		stage := k.String()
		if k == KindNone {
			stage = "open"
		}
		s.gone = true
		s.log.Info("MTA went away", "stage", stage)
	}
}

// eom ends the message. Live backends (the first editor, read-only ones
// before any editor, everyone in parallel mode) get EOM at once; then the
// chain is walked in configured order: each replayed backend gets the
// content phase as edited so far, unless a backend before it (live or
// replayed) objected, as the MTA's chain would never reach it. The merged
// verdict is taken over all of them (merger).
func (s *Session) eom(ctx context.Context, ev *Event) Reply {
	if ev.Macros != nil {
		s.cmacros[KindEOM] = ev.Macros
	}
	defer s.startMessage()
	s.settle(ctx)
	if s.final.Verdict.Objects() {
		return s.final
	}
	s.condCheck(ctx, ev, false)
	if r, ok := s.storeVerdict(ctx, ev); ok {
		return r
	}
	targets := s.targets(ev, true)
	res := s.fanout(ctx, targets, ev)
	if cap(s.live) < len(s.bs) {
		s.live = make([]liveAnswer, len(s.bs))
	}
	live := s.live[:len(s.bs)] // by position; zero but for the live backends
	defer clear(live)
	for i, b := range targets {
		r := res[i]
		if r.err == nil {
			if err := checkEdits(b, r.r.Edits); err != nil {
				r.err = err
			}
		}
		l := &live[b.pos]
		l.live, l.vote = true, s.vote(ctx, b, ev, r)
		if r.err == nil && len(r.r.Edits) > 0 {
			if b.slot.Policy.Evaluate {
				s.logEvaluated(b, r.r.Edits)
			} else {
				l.edits = r.r.Edits
			}
		}
	}
	if ctx.Err() != nil {
		s.wentAway(KindEOM)
		return Reply{Verdict: Tempfail}
	}
	var out, body, quarantine []Edit
	apply := func(b *bstate, edits []Edit) {
		// Several header editors saw the original list: translate each
		// one's edits through its own view (the original plus its own
		// edits so far) to the list as edited before it. With one editor
		// there is nothing to translate.
		var view *headerModel
		if s.parallelHeaderEdits {
			view = s.hdr.view()
		}
		for _, e := range edits {
			if int(e.Kind) < numEdits {
				b.mc.edits[e.Kind].Add(1)
			}
			s.recEdit(b, &e, "")
			switch e.Kind {
			case EditReplaceBody:
				body = append(body[:0], e)
			case EditQuarantine:
				if quarantine == nil {
					quarantine = []Edit{e}
				}
			case EditAddHeader, EditInsertHeader, EditChangeHeader:
				id := s.hdr.newID()
				if view != nil {
					te, ok := s.hdr.translate(view, e)
					view.apply(e, id)
					if !ok {
						s.recDropped(b)
						s.log.Info("header edit dropped: its header was deleted by an earlier backend",
							"backend", b.name, "edit", e.Kind.String(), "name", e.Name, "index", e.Index)
						continue
					}
					e = te
				}
				s.hdr.apply(e, id)
				out = append(out, e)
			default:
				out = append(out, e)
			}
		}
	}
	m := s.merger()
	for i, b := range s.bs {
		switch {
		case live[i].live:
			m.add(i, live[i].vote)
			apply(b, live[i].edits)
		case b.replay && !b.dead && !b.doneConn && !b.doneMsg:
			if m.objects() {
				continue // the chain would not reach it
			}
			edits, c := s.replay(ctx, b, body)
			if ctx.Err() != nil {
				s.wentAway(KindEOM)
				return Reply{Verdict: Tempfail}
			}
			m.add(i, c)
			if !b.slot.Policy.Evaluate {
				apply(b, edits)
			} else if len(edits) > 0 {
				s.logEvaluated(b, edits)
			}
		case b.dead && b.vote.Objects():
			m.add(i, Reply{Verdict: b.vote, From: b.name})
		}
	}
	if m.objects() {
		s.log.Debug("verdict", "stage", "eom", "verdict", m.best.Verdict.String(), "backend", m.best.From)
		return m.best
	}
	out = append(out, quarantine...)
	out = append(out, body...)
	return Reply{Verdict: Continue, Edits: out}
}

// liveAnswer is what a live backend answered at end of message.
type liveAnswer struct {
	live  bool
	vote  Reply
	edits []Edit // its edits, to apply (nil in evaluation)
}

func (s *Session) logEvaluated(b *bstate, edits []Edit) {
	for _, e := range edits {
		s.recEdit(b, &e, "evaluation")
		s.recPolicy("would_edit", b, KindEOM, e.Kind.String())
		s.log.Info("evaluation: backend would have edited", "backend", b.name, "edit", e.Kind.String(),
			"name", e.Name, "index", e.Index, "addr", e.Addr)
	}
}

// crlf returns a replacement body with the line ends the MTA shows the
// next milter: Postfix and Sendmail store a replaced body line by line and
// send every line, the last one included, with CRLF. Most milters replace
// the body with bare LF line ends; an existing CRLF is kept (no doubled
// CR).
func crlf(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32+2)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// replay plays the content phase to a backend that did not see it live:
// the headers as edited so far, EOH, the (possibly replaced) body, EOM.
func (s *Session) replay(ctx context.Context, b *bstate, replaced []Edit) ([]Edit, Reply) {
	step := func(ev *Event) (Reply, bool) {
		if ctx.Err() != nil {
			return Reply{}, false
		}
		t0 := time.Now()
		r, err := b.handle(ctx, s.view(b, ev))
		at := time.Now()
		if err == nil && ev.Kind == KindEOM {
			err = checkEdits(b, r.Edits)
		}
		c := s.vote(ctx, b, ev, result{r: r, err: err, at: at, dur: at.Sub(t0)})
		if err != nil {
			return c, false
		}
		if c.Verdict.Objects() || (b.doneMsg && ev.Kind != KindEOM) {
			return c, false
		}
		return r, true
	}
	b.skip = KindNone
	if bt := b.batcher(); bt != nil {
		return s.replayAhead(ctx, b, bt, replaced)
	}
	var c Reply
	ok := true
	s.hdr.visible(func(f hfield) bool {
		c, ok = step(&Event{Kind: KindHeader, Name: f.name, Value: f.value, Macros: s.cmacros[KindHeader]})
		return ok && b.skip != KindHeader
	})
	if !ok {
		return nil, c
	}
	if c, ok := step(&Event{Kind: KindEOH, Macros: s.cmacros[KindEOH]}); !ok {
		return nil, c
	}
	b.skip = KindNone
	send := func(chunk []byte) (Reply, bool) {
		return step(&Event{Kind: KindBody, Chunk: chunk, Macros: s.cmacros[KindBody]})
	}
	if len(replaced) > 0 {
		// One chunk: a backend with a chunk limit re-chunks (the milter
		// backend sends 65535 bytes at a time).
		if nb := crlf(replaced[0].Body); len(nb) > 0 {
			if c, ok := send(nb); !ok {
				return nil, c
			}
		}
	} else if c, ok := s.replayBody(ctx, b, send); !ok {
		return nil, c
	}
	r, ok := step(&Event{Kind: KindEOM, Macros: s.cmacros[KindEOM]})
	if !ok {
		return nil, r
	}
	return r.Edits, Reply{}
}

// replayAhead is replay for a backend that batches: the whole content
// phase and EOM go out at once (in one write when it fits the buffer),
// then the answers are read in order, up to the first that ends the
// message for the backend (it ignores the rest, see Batcher). Nothing is
// sent after EOM before its answer.
func (s *Session) replayAhead(ctx context.Context, b *bstate, bt Batcher, replaced []Edit) ([]Edit, Reply) {
	owed := forget(s.owed)
	defer func() { s.owed = forget(owed) }()
	var c Reply
	ok := true
	s.evs.reset()    // the previous replay's events are answered
	t0 := time.Now() // the posts take microseconds: one clock read for all
	post := func(e Event) (Reply, bool) {
		if ctx.Err() != nil {
			return Reply{}, false
		}
		ev := s.evs.add(e)
		v := s.view(b, ev) // as replay's step: the macros earlier backends set
		answer, err := b.post(ctx, v)
		if err != nil {
			at := time.Now()
			return s.vote(ctx, b, ev, result{err: err, at: at, dur: at.Sub(t0)}), false
		}
		if answer {
			owed = append(owed, v)
		}
		return Reply{}, true
	}
	bt.Hold()
	s.hdr.visible(func(f hfield) bool {
		c, ok = post(Event{Kind: KindHeader, Name: f.name, Value: f.value, Macros: s.cmacros[KindHeader]})
		return ok
	})
	if ok {
		c, ok = post(Event{Kind: KindEOH, Macros: s.cmacros[KindEOH]})
	}
	if ok {
		send := func(chunk []byte) (Reply, bool) {
			return post(Event{Kind: KindBody, Chunk: chunk, Macros: s.cmacros[KindBody]})
		}
		if len(replaced) > 0 {
			if nb := crlf(replaced[0].Body); len(nb) > 0 {
				c, ok = send(nb)
			}
		} else {
			c, ok = s.replayBody(ctx, b, send)
		}
	}
	if ok {
		c, ok = post(Event{Kind: KindEOM, Macros: s.cmacros[KindEOM]})
	}
	if !ok {
		// A post failed (the backend is dropped) or the MTA went away:
		// nothing of it is read.
		return nil, c
	}
	// Each answer's latency is from the previous answer (the first's from
	// the posts): they were all asked for at once.
	for _, ev := range owed {
		if ctx.Err() != nil {
			return nil, Reply{}
		}
		r, err := b.await(ctx, ev)
		at := time.Now()
		if err == nil && ev.Kind == KindEOM {
			err = checkEdits(b, r.Edits)
		}
		c := s.vote(ctx, b, ev, result{r: r, err: err, at: at, dur: at.Sub(t0)})
		t0 = at
		if err != nil || c.Verdict.Objects() || (b.doneMsg && ev.Kind != KindEOM) {
			return nil, c
		}
		if ev.Kind == KindEOM {
			return r.Edits, Reply{}
		}
	}
	return nil, Reply{}
}

// eventSlab hands out the events of a replay from arrays the session
// keeps: one allocation per session rather than one per replayed header.
// A full array is left to the events pointing into it and a new one
// started, so pointers stay valid until reset.
type eventSlab struct{ cur []Event }

func (sl *eventSlab) add(e Event) *Event {
	if len(sl.cur) == cap(sl.cur) {
		sl.cur = make([]Event, 0, max(16, 2*cap(sl.cur)))
	}
	sl.cur = append(sl.cur, e)
	return &sl.cur[len(sl.cur)-1]
}

// reset forgets the events handed out (and what they point to).
func (sl *eventSlab) reset() {
	clear(sl.cur)
	sl.cur = sl.cur[:0]
}
