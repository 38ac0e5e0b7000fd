// session.go: event dispatch and verdict merge for one MTA session.

package pmult

import (
	"context"
	"fmt"
	"sync"
)

// Handle delivers one event to the backends that should get it and returns
// the merged reply. ABORT, QUIT and QUIT_NC return Continue (the MTA reads
// no reply for them).
func (s *Session) Handle(ctx context.Context, ev *Event) Reply {
	s.noteMacros(ev)
	var r Reply
	switch ev.Kind {
	case KindConnect, KindHelo, KindMail, KindRcpt, KindData, KindUnknown:
		r = s.envelope(ctx, ev)
	case KindHeader, KindEOH, KindBody:
		r = s.content(ctx, ev)
	case KindEOM:
		r = s.eom(ctx, ev)
	case KindAbort:
		s.abort(ctx, ev)
		return r
	case KindQuitNC:
		s.quitNC(ctx, ev)
		return r
	case KindQuit:
		s.Close()
		return r
	default:
		return r
	}
	s.m.replies[ev.Kind][r.Verdict].Add(1)
	return r
}

// noteMacros follows the MTA's queue id in the logs.
func (s *Session) noteMacros(ev *Event) {
	for _, m := range ev.Macros {
		for i := 0; i+1 < len(m.Pairs); i += 2 {
			if m.Pairs[i] == "i" && m.Pairs[i+1] != "" && m.Pairs[i+1] != s.qid {
				s.qid = m.Pairs[i+1]
				s.log = s.base.With("qid", s.qid)
			}
		}
	}
}

// fanout sends ev to every target at once and waits for all answers.
// Envelope and content events are posted to every backend first and the
// answers read after, so the backends work in parallel with no goroutine
// per backend; end of message (long, with PROGRESS to relay as it comes)
// uses one goroutine per backend.
func (s *Session) fanout(ctx context.Context, targets []*bstate, ev *Event) []result {
	if cap(s.res) < len(targets) {
		s.res = make([]result, len(targets))
	}
	res := s.res[:len(targets)]
	switch {
	case len(targets) == 0:
	case len(targets) == 1:
		res[0].r, res[0].err = targets[0].sess.Send(ctx, ev)
	case ev.Kind == KindEOM:
		var wg sync.WaitGroup
		for i := 1; i < len(targets); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i].r, res[i].err = targets[i].sess.Send(ctx, ev)
			}()
		}
		res[0].r, res[0].err = targets[0].sess.Send(ctx, ev)
		wg.Wait()
	default:
		if cap(s.await) < len(targets) {
			s.await = make([]bool, len(targets))
		}
		await := s.await[:len(targets)]
		for i, b := range targets {
			res[i] = result{}
			await[i], res[i].err = b.sess.Post(ctx, ev)
		}
		for i, b := range targets {
			if await[i] && res[i].err == nil {
				res[i].r, res[i].err = b.sess.Await(ctx, ev)
			}
		}
	}
	return res
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
func (s *Session) vote(b *bstate, ev *Event, r result) Reply {
	if r.err != nil {
		s.failed(b, ev.Kind, r.err)
		return Reply{Verdict: b.vote, From: b.name}
	}
	rep := r.r
	if int(rep.Verdict) < numVerdicts {
		b.mc.replies[ev.Kind][rep.Verdict].Add(1)
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

// stronger reports whether a beats the current best b (ties: earlier wins,
// so a later candidate must be strictly stronger).
func stronger(a, b Reply) bool { return a.Verdict.rank() > b.Verdict.rank() }

// sticky adds the votes of failed backends to best.
func (s *Session) sticky(best Reply) Reply {
	for _, b := range s.bs {
		if b.dead && b.vote.Objects() {
			if c := (Reply{Verdict: b.vote, From: b.name}); stronger(c, best) {
				best = c
			}
		}
	}
	return best
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
	if ev.Kind == KindMail {
		s.startMessage()
		for _, b := range s.bs {
			b.doneMsg = false
			// Backends done for the connection are not in the message.
			b.inMsg = !b.dead && !b.doneConn
		}
	}
	targets := s.targets(ev, false)
	res := s.fanout(ctx, targets, ev)
	best := Reply{}
	for i, b := range targets {
		if c := s.vote(b, ev, res[i]); stronger(c, best) {
			best = c
		}
	}
	best = s.sticky(best)
	switch ev.Kind {
	case KindConnect, KindHelo:
		if best.Verdict == Discard {
			// Not allowed at these stages: discard every message instead.
			if !s.connDiscard {
				s.connDiscardFrom = best.From
			}
			s.connDiscard = true
			best = Reply{}
		}
	case KindMail:
		if c := (Reply{Verdict: Discard, From: s.connDiscardFrom}); s.connDiscard && stronger(c, best) {
			best = c
		}
	}
	if !best.Verdict.Objects() && s.allDone(ev.Kind != KindConnect && ev.Kind != KindHelo) && !s.connDiscard {
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
	if !s.keep(ev) {
		return Reply{}
	}
	targets := s.targets(ev, true)
	res := s.fanout(ctx, targets, ev)
	best := Reply{}
	for i, b := range targets {
		if c := s.vote(b, ev, res[i]); stronger(c, best) {
			best = c
		}
	}
	best = s.sticky(best)
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

func (s *Session) abort(ctx context.Context, ev *Event) {
	for _, b := range s.bs {
		if b.dead || b.doneConn || !b.inMsg {
			continue
		}
		b.inMsg = false
		b.doneMsg = false
		b.skip = KindNone
		if _, err := b.sess.Send(ctx, ev); err != nil {
			s.failed(b, ev.Kind, err)
		}
	}
	s.startMessage()
}

func (s *Session) quitNC(ctx context.Context, ev *Event) {
	for _, b := range s.bs {
		if b.dead {
			continue
		}
		if _, err := b.sess.Send(ctx, ev); err != nil {
			s.failed(b, ev.Kind, err)
			continue
		}
		*b = bstate{slot: b.slot, name: b.name, sess: b.sess, caps: b.caps, replay: b.replay, mc: b.mc}
	}
	s.connDiscard = false
	s.connDiscardFrom = ""
	s.startMessage()
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

func (s *Session) eom(ctx context.Context, ev *Event) Reply {
	if ev.Macros != nil {
		s.cmacros[KindEOM] = ev.Macros
	}
	defer s.startMessage()
	if r, ok := s.storeVerdict(ctx, ev); ok {
		return r
	}
	best := s.final
	var perBackend [][]Edit
	if !best.Verdict.Objects() {
		targets := s.targets(ev, true)
		res := s.fanout(ctx, targets, ev)
		perBackend = make([][]Edit, len(s.bs))
		for i, b := range targets {
			r := res[i]
			if r.err == nil {
				if err := checkEdits(b, r.r.Edits); err != nil {
					r.err = err
				}
			}
			c := s.vote(b, ev, r)
			if r.err == nil && len(r.r.Edits) > 0 {
				if b.slot.Policy.Evaluate {
					s.logEvaluated(b, r.r.Edits)
				} else {
					perBackend[s.index(b)] = r.r.Edits
				}
			}
			if stronger(c, best) {
				best = c
			}
		}
	}
	var out, body, quarantine []Edit
	apply := func(b *bstate, edits []Edit) {
		for _, e := range edits {
			if int(e.Kind) < numEdits {
				b.mc.edits[e.Kind].Add(1)
			}
			switch e.Kind {
			case EditReplaceBody:
				body = append(body[:0], e)
			case EditQuarantine:
				if quarantine == nil {
					quarantine = []Edit{e}
				}
			case EditAddHeader, EditInsertHeader, EditChangeHeader:
				// Several header editors saw the original list: translate
				// each one's indexes to the list as edited before it. With
				// one editor there is nothing to translate (and the engine
				// may not even have the headers).
				if s.parallelHeaderEdits {
					var ok bool
					if e, ok = s.hdr.translate(e); !ok {
						s.log.Info("header edit dropped: its header was deleted by an earlier backend",
							"backend", b.name, "edit", e.Kind.String(), "name", e.Name, "index", e.Index)
						continue
					}
				}
				s.hdr.apply(e)
				out = append(out, e)
			default:
				out = append(out, e)
			}
		}
	}
	for i, b := range s.bs {
		if best.Verdict.Objects() {
			break
		}
		if b.replay {
			if b.dead || b.doneConn || b.doneMsg {
				continue
			}
			edits, c := s.replay(ctx, b, body)
			if stronger(c, best) {
				best = c
			}
			if !b.slot.Policy.Evaluate {
				apply(b, edits)
			} else if len(edits) > 0 {
				s.logEvaluated(b, edits)
			}
			continue
		}
		if perBackend != nil {
			apply(b, perBackend[i])
		}
	}
	best = s.sticky(best)
	if best.Verdict.Objects() {
		s.log.Debug("verdict", "stage", "eom", "verdict", best.Verdict.String(), "backend", best.From)
		return best
	}
	out = append(out, quarantine...)
	out = append(out, body...)
	return Reply{Verdict: Continue, Edits: out}
}

func (s *Session) index(b *bstate) int {
	for i, x := range s.bs {
		if x == b {
			return i
		}
	}
	return -1
}

func (s *Session) logEvaluated(b *bstate, edits []Edit) {
	for _, e := range edits {
		s.log.Info("evaluation: backend would have edited", "backend", b.name, "edit", e.Kind.String(),
			"name", e.Name, "index", e.Index, "addr", e.Addr)
	}
}

// replay plays the content phase to a backend that did not see it live:
// the headers as edited so far, EOH, the (possibly replaced) body, EOM.
func (s *Session) replay(ctx context.Context, b *bstate, replaced []Edit) ([]Edit, Reply) {
	step := func(ev *Event) (Reply, bool) {
		r, err := b.sess.Send(ctx, ev)
		if err == nil && ev.Kind == KindEOM {
			err = checkEdits(b, r.Edits)
		}
		c := s.vote(b, ev, result{r: r, err: err})
		if err != nil {
			return c, false
		}
		if c.Verdict.Objects() || (b.doneMsg && ev.Kind != KindEOM) {
			return c, false
		}
		return r, true
	}
	b.skip = KindNone
	for _, f := range s.hdr.list {
		ev := &Event{Kind: KindHeader, Name: f.name, Value: f.value, Macros: s.cmacros[KindHeader]}
		c, ok := step(ev)
		if !ok {
			return nil, c
		}
		if b.skip == KindHeader {
			break
		}
	}
	if c, ok := step(&Event{Kind: KindEOH, Macros: s.cmacros[KindEOH]}); !ok {
		return nil, c
	}
	b.skip = KindNone
	send := func(chunk []byte) (Reply, bool) {
		return step(&Event{Kind: KindBody, Chunk: chunk, Macros: s.cmacros[KindBody]})
	}
	if len(replaced) > 0 {
		nb := replaced[0].Body
		for len(nb) > 0 && b.skip != KindBody {
			n := min(len(nb), 65535)
			if c, ok := send(nb[:n]); !ok {
				return nil, c
			}
			nb = nb[n:]
		}
	} else if c, ok := s.replayBody(b, send); !ok {
		return nil, c
	}
	r, ok := step(&Event{Kind: KindEOM, Macros: s.cmacros[KindEOM]})
	if !ok {
		return nil, r
	}
	return r.Edits, Reply{}
}
