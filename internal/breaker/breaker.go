// breaker.go: a backend's circuit breaker, which also decides whether an
// open may start while others are pending.
//
// Tunables and defaults (constants):
//   MinDown    1s  first down period after a failed open
//   MaxDown   30s  the down period doubles up to this while probes fail
//   OpenStall  1s  an open pending this long with none succeeding since
//                  makes further opens fail fast

// Package breaker is a backend's circuit breaker over its opens (connect
// and negotiation), for the backends of pmult: while the backend is down
// or wedged, opens fail fast with an error wrapping pmult.ErrDown, which
// the engine treats as the backend's failure without a warning per
// session. It imports pmult only (for ErrDown).
package breaker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/mailmux/mailmux/pmult"
)

// Breaker periods.
const (
	MinDown = time.Second
	MaxDown = 30 * time.Second
	// OpenStall is how long an open may be pending, with no open
	// succeeding since it started, before further opens fail fast
	// (pmult.ErrDown) instead of waiting on the same wedged backend (one
	// that accepts connections into its kernel backlog and never answers).
	OpenStall = time.Second
)

// Breaker counts failed opens (connect and negotiation) of one backend.
// Its zero value is up; set Name and Log before the first Admit.
//
// After a failed open the backend is down for MinDown: Open fails at once
// (pmult.ErrDown) until the period is over, then one open at a time is let
// through as a probe. The period doubles, up to MaxDown, only when a probe
// fails: the opens that were pending when the breaker tripped fail too,
// and they are the same outage, not a longer one. A success ends it.
//
// A pending open counts as probing: while an open has been pending for
// OpenStall and no open has succeeded since it started, further opens fail
// fast. A backend that recently opened (within OpenStall) admits every
// open at once, however many are pending, so a healthy backend under load
// is never refused; one that has not opens one probe and makes the opens
// that come meanwhile wait for it (at most until it has been pending for
// OpenStall), so a cold start waits for one negotiation and then goes on.
//
// An open abandoned because its MTA session went away (ctx cancelled)
// counts neither as a failure nor as a success.
type Breaker struct {
	// Name names the backend in the down and up lines.
	Name string
	// Log receives the down and up lines (nil: none).
	Log *slog.Logger

	mu        sync.Mutex
	downFor   time.Duration // 0: up
	downUntil time.Time
	probing   bool          // a probe admitted after the down period is pending
	lastOK    time.Time     // when an open last succeeded
	pending   []*Attempt    // opens in flight, oldest first
	changed   chan struct{} // closed and replaced when an open ends
}

// Attempt is one open in flight, admitted by Admit. Exactly one of Record
// and Abandon must be called when it ends.
type Attempt struct {
	b     *Breaker
	start time.Time
	probe bool // admitted as the breaker's probe after a down period
}

// Record records how the open ended: err nil for a success.
func (a *Attempt) Record(err error) { a.b.done(a, err, false) }

// Abandon records an open abandoned because its MTA session went away
// (ctx cancelled): a verdict on the backend neither way.
func (a *Attempt) Abandon() { a.b.done(a, nil, true) }

// State is a snapshot of a breaker.
type State struct {
	DownFor time.Duration // the current down period; 0: up
	Probing bool          // a probe is pending
	Pending int           // opens in flight
}

// State returns the breaker's state.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return State{DownFor: b.downFor, Probing: b.probing, Pending: len(b.pending)}
}

// Expire ends the current down period now: the next Admit lets a probe
// through (an operator's "retry now"; tests).
func (b *Breaker) Expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.downFor != 0 {
		b.downUntil = time.Now()
	}
}

// unconfirmed returns the oldest pending open that started after the last
// success, or nil. Called with mu held.
func (b *Breaker) unconfirmed() *Attempt {
	for _, a := range b.pending {
		if a.start.After(b.lastOK) {
			return a
		}
	}
	return nil
}

// Admit decides whether an open may start now; where the backend is up
// but has not opened recently and a first open is pending, it waits for
// that open (until ctx is done or deadline). Refused, it returns an error
// wrapping pmult.ErrDown (or ctx's error), prefixed with where; admitted,
// an Attempt the caller must Record or Abandon.
func (b *Breaker) Admit(ctx context.Context, deadline time.Time, where string) (*Attempt, error) {
	for {
		b.mu.Lock()
		now := time.Now()
		if b.downFor != 0 {
			if now.Before(b.downUntil) || b.probing {
				b.mu.Unlock()
				return nil, fmt.Errorf("%s: %w (retrying in %s)", where, pmult.ErrDown,
					max(b.downUntil.Sub(now), 0).Round(time.Millisecond))
			}
			b.probing = true
			return b.start(now, true), nil
		}
		p := b.unconfirmed()
		if p == nil || now.Sub(b.lastOK) <= OpenStall {
			return b.start(now, false), nil
		}
		age := now.Sub(p.start)
		if age >= OpenStall {
			b.mu.Unlock()
			return nil, fmt.Errorf("%s: %w (an open has been pending for %s, none succeeded since)",
				where, pmult.ErrDown, age.Round(time.Millisecond))
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		wait := OpenStall - age
		if until := time.Until(deadline); until < wait {
			wait = until
		}
		if wait <= 0 {
			return nil, fmt.Errorf("%s: %w (open budget spent waiting for a pending open)", where, pmult.ErrDown)
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: %w", where, ctx.Err())
		}
		t.Stop()
	}
}

// start records a new pending open. Called with mu held; it unlocks.
func (b *Breaker) start(now time.Time, probe bool) *Attempt {
	a := &Attempt{b: b, start: now, probe: probe}
	b.pending = append(b.pending, a)
	b.mu.Unlock()
	return a
}

// done records how an open ended: err nil for a success; neutral for one
// abandoned by its MTA session (no verdict on the backend).
func (b *Breaker) done(a *Attempt, err error, neutral bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.pending, a); i >= 0 {
		b.pending = slices.Delete(b.pending, i, i+1)
	}
	if a.probe {
		b.probing = false
	}
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	now := time.Now()
	switch {
	case neutral:
	case err == nil:
		b.lastOK = now
		if b.downFor != 0 && b.Log != nil {
			b.Log.Info("backend is up again", "backend", b.Name)
		}
		b.downFor = 0
	case a.start.Before(b.lastOK):
		// An open that started before another succeeded: the backend
		// answers; this failure is this session's alone.
	case b.downFor == 0:
		b.downFor = MinDown
		b.downUntil = now.Add(MinDown)
		if b.Log != nil {
			b.Log.Warn("backend is down, failing fast until it answers", "backend", b.Name, "err", err)
		}
	case a.probe:
		b.downFor = min(b.downFor*2, MaxDown)
		b.downUntil = now.Add(b.downFor)
	default:
		// Pending when the breaker tripped: the same outage.
	}
}
