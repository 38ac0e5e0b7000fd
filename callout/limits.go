// limits.go: per-domain good citizenship: at most Concurrency probes of
// one domain at a time, and a token bucket of Rate probes a second (Burst
// at once). Idle domains are forgotten, so memory follows the domains
// being probed, not every domain ever seen.
//
// Defaults (Verifier): DomainConcurrency 2, DomainRate 10/s, DomainBurst 10.

package callout

import (
	"context"
	"sync"
	"time"
)

// domainLimiter holds the state of every domain being probed.
type domainLimiter struct {
	conc  int
	rate  float64 // tokens per second; <= 0: no rate limit
	burst float64

	mu      sync.Mutex
	m       map[string]*domainState
	sweepAt int // sweep idle domains when the map reaches this size
}

type domainState struct {
	sem    chan struct{}
	refs   int
	tokens float64
	last   time.Time
}

func newDomainLimiter(conc int, rate float64, burst int) *domainLimiter {
	if burst < 1 {
		burst = 1
	}
	return &domainLimiter{conc: conc, rate: rate, burst: float64(burst), m: map[string]*domainState{}, sweepAt: minSweep}
}

// set changes the limits (a reload): new domain states get them; idle
// ones are forgotten now so their next probe does, and domains with probes
// in flight keep their concurrency until they are idle.
func (l *domainLimiter) set(conc int, rate float64, burst int) {
	if burst < 1 {
		burst = 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conc, l.rate, l.burst = conc, rate, float64(burst)
	for d, st := range l.m {
		if st.refs == 0 {
			delete(l.m, d)
		}
	}
}

// minSweep is the smallest map size at which idle domains are swept.
const minSweep = 1024

// sweep forgets domains with no probe and a full token bucket (they would
// be created the same again). Called with l.mu held.
func (l *domainLimiter) sweep(now time.Time) {
	for d, st := range l.m {
		if st.refs == 0 && (l.rate <= 0 || st.tokens+now.Sub(st.last).Seconds()*l.rate >= l.burst) {
			delete(l.m, d)
		}
	}
	l.sweepAt = max(minSweep, 2*len(l.m))
}

// acquire waits for a probe slot for domain. waited says whether the
// limits made it wait. The returned release must be called once.
func (l *domainLimiter) acquire(ctx context.Context, domain string) (release func(), waited bool, err error) {
	l.mu.Lock()
	st := l.m[domain]
	if st == nil {
		if len(l.m) >= l.sweepAt {
			l.sweep(time.Now())
		}
		st = &domainState{sem: make(chan struct{}, l.conc), tokens: l.burst, last: time.Now()}
		l.m[domain] = st
	}
	st.refs++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		st.refs--
		l.mu.Unlock()
	}
	select {
	case st.sem <- struct{}{}:
	default:
		waited = true
		select {
		case st.sem <- struct{}{}:
		case <-ctx.Done():
			done()
			return nil, true, ctx.Err()
		}
	}
	release = func() {
		<-st.sem
		done()
	}
	for {
		l.mu.Lock()
		rate, burst := l.rate, l.burst
		if rate <= 0 {
			l.mu.Unlock()
			break
		}
		now := time.Now()
		st.tokens += now.Sub(st.last).Seconds() * rate
		if st.tokens > burst {
			st.tokens = burst
		}
		st.last = now
		if st.tokens >= 1 {
			st.tokens--
			l.mu.Unlock()
			break
		}
		wait := time.Duration((1 - st.tokens) / rate * float64(time.Second))
		l.mu.Unlock()
		waited = true
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			release()
			return nil, true, ctx.Err()
		}
	}
	return release, waited, nil
}

// active returns the number of domains with probes in flight.
func (l *domainLimiter) active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, st := range l.m {
		if st.refs > 0 {
			n++
		}
	}
	return n
}
