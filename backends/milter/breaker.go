// breaker.go: the backend's circuit breaker, which also decides whether an
// open may start while others are pending.
//
// Tunables and defaults (constants):
//   MinDown    1s  first down period after a failed open
//   MaxDown   30s  the down period doubles up to this while probes fail
//   OpenStall  1s  an open pending this long with none succeeding since
//                  makes further opens fail fast

package milter

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

// breaker counts failed opens (connect and negotiation) of one backend.
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
type breaker struct {
	name string
	log  *slog.Logger

	mu        sync.Mutex
	downFor   time.Duration // 0: up
	downUntil time.Time
	probing   bool          // a probe admitted after the down period is pending
	lastOK    time.Time     // when an open last succeeded
	pending   []*attempt    // opens in flight, oldest first
	changed   chan struct{} // closed and replaced when an open ends
}

// attempt is one open in flight.
type attempt struct {
	start time.Time
	probe bool // admitted as the breaker's probe after a down period
}

// unconfirmed returns the oldest pending open that started after the last
// success, or nil. Called with mu held.
func (b *breaker) unconfirmed() *attempt {
	for _, a := range b.pending {
		if a.start.After(b.lastOK) {
			return a
		}
	}
	return nil
}

// admit decides whether an open may start now; where the backend is up
// but has not opened recently and a first open is pending, it waits for
// that open (until ctx is done or deadline). The caller must pass the
// attempt to done.
func (b *breaker) admit(ctx context.Context, deadline time.Time, where string) (*attempt, error) {
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
func (b *breaker) start(now time.Time, probe bool) *attempt {
	a := &attempt{start: now, probe: probe}
	b.pending = append(b.pending, a)
	b.mu.Unlock()
	return a
}

// done records how an open ended: err nil for a success; neutral for one
// abandoned by its MTA session (no verdict on the backend).
func (b *breaker) done(a *attempt, err error, neutral bool) {
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
		if b.downFor != 0 && b.log != nil {
			b.log.Info("backend is up again", "backend", b.name)
		}
		b.downFor = 0
	case a.start.Before(b.lastOK):
		// An open that started before another succeeded: the backend
		// answers; this failure is this session's alone.
	case b.downFor == 0:
		b.downFor = MinDown
		b.downUntil = now.Add(MinDown)
		if b.log != nil {
			b.log.Warn("backend is down, failing fast until it answers", "backend", b.name, "err", err)
		}
	case a.probe:
		b.downFor = min(b.downFor*2, MaxDown)
		b.downUntil = now.Add(b.downFor)
	default:
		// Pending when the breaker tripped: the same outage.
	}
}
