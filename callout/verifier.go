// verifier.go: the Verifier, between the protocol and the prober: cache
// lookups (address, then dead or down domain), deduplication of probes of
// the same address in flight, the global cap on pending probes, per-domain
// limits, catch-all detection, and recording what probes found.
//
// Update changes the settings of a running Verifier (calloutd's reload).
//
// Defaults: MaxPending 1000, DomainConcurrency 2, DomainRate 10 per
// second, DomainBurst 10, CatchAll off, no cache (nil Cache).

package callout

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// Verifier defaults.
const (
	DefaultMaxPending        = 1000
	DefaultDomainConcurrency = 2
	DefaultDomainRate        = 10.0
	DefaultDomainBurst       = 10
	DefaultBgWorkers         = 4
	DefaultBgQueue           = 1000
)

// ErrTooManyPending is the error of an answer refused by MaxPending.
var ErrTooManyPending = errors.New("callout: too many probes pending")

// Verifier answers verification requests. Set its fields before the first
// call; it is safe for concurrent use. Close stops background work.
type Verifier struct {
	// Prober runs the SMTP probes (required).
	Prober *smtpprobe.Prober
	// Cache stores results; nil: nothing is cached.
	Cache *cache.Cache
	// MaxPending caps the probes running or waiting for a limit; more
	// are answered temp_failure at once. Default 1000.
	MaxPending int
	// DomainConcurrency is the most probes of one domain at a time
	// (default 2).
	DomainConcurrency int
	// DomainRate is the most probes of one domain a second (default 10;
	// negative: no rate limit); DomainBurst how many may start at once
	// (default 10).
	DomainRate  float64
	DomainBurst int
	// CatchAll enables catch-all detection: after a success, a random
	// local part of the domain is tried too (once per domain and
	// cache lifetime).
	CatchAll bool
	// MailRefusedFailure answers failure (not cached) instead of
	// not_found when the server refused the probe's MAIL FROM (see
	// smtpprobe.Outcome.MailRefused): the address was never asked about.
	// Off by default, as in mailfromd's calloutd.
	MailRefusedFailure bool
	// HardTimeouts are used by background probes (default
	// smtpprobe.HardTimeouts()).
	HardTimeouts smtpprobe.Timeouts
	// BgWorkers and BgQueue size background completion (defaults 4, 1000).
	BgWorkers int
	BgQueue   int
	// Logger receives warnings (cache errors) and background results;
	// nil: discarded.
	Logger *slog.Logger

	initOnce sync.Once
	upd      atomic.Pointer[Verifier] // the settings of the last Update
	limiter  *domainLimiter
	mu       sync.Mutex
	inflight map[string]*call
	c        counters
	bg       background
}

// call is a probe in flight that other requests may join.
type call struct {
	done chan struct{}
	out  smtpprobe.Outcome
}

func (v *Verifier) init() {
	v.initOnce.Do(func() {
		v.limiter = newDomainLimiter(limiterSettings(v))
		v.inflight = map[string]*call{}
	})
}

// limiterSettings are the per-domain limits of v, defaults applied.
func limiterSettings(v *Verifier) (conc int, rate float64, burst int) {
	conc, rate, burst = v.DomainConcurrency, v.DomainRate, v.DomainBurst
	if conc <= 0 {
		conc = DefaultDomainConcurrency
	}
	if rate == 0 {
		rate = DefaultDomainRate
	}
	if burst <= 0 {
		burst = DefaultDomainBurst
	}
	return conc, rate, burst
}

func (v *Verifier) log() *slog.Logger {
	if l := v.cur().Logger; l != nil {
		return l
	}
	return discardLog
}

// cur returns the settings in force: the last Update's, or v's own.
func (v *Verifier) cur() *Verifier {
	if u := v.upd.Load(); u != nil {
		return u
	}
	return v
}

// Update changes the settings of a running Verifier (a configuration
// reload) for the requests that start after it: Prober, Cache (give it
// the same Store: only the lifetimes should change), MaxPending, the
// per-domain limits (domains with probes in flight keep their
// concurrency until they are idle), CatchAll, MailRefusedFailure,
// HardTimeouts and Logger are taken from n, which must not be changed
// afterwards. Probes in flight, their sharing, the counters and
// background completion go on; BgWorkers and BgQueue keep their values.
func (v *Verifier) Update(n *Verifier) {
	v.init()
	u := &Verifier{Prober: n.Prober, Cache: n.Cache, MaxPending: n.MaxPending, DomainConcurrency: n.DomainConcurrency,
		DomainRate: n.DomainRate, DomainBurst: n.DomainBurst, CatchAll: n.CatchAll, MailRefusedFailure: n.MailRefusedFailure,
		HardTimeouts: n.HardTimeouts, BgWorkers: v.BgWorkers, BgQueue: v.BgQueue, Logger: n.Logger}
	v.limiter.set(limiterSettings(u))
	v.upd.Store(u)
}

// Stats returns a snapshot of the counters.
func (v *Verifier) Stats() Stats {
	v.init()
	s := v.c.snapshot()
	s.TrackedDomains = v.limiter.active()
	return s
}

// CacheKey is the cache key of a request: the address (lower case, no
// angle brackets), and for modes other than plain mxfirst the mode and
// host, whose answer may differ.
func CacheKey(req smtpprobe.Request) string {
	local, domain, _ := smtpprobe.SplitAddress(req.Email)
	k := local + "@" + domain
	if req.Mode != smtpprobe.MXFirst || req.Host != "" {
		k += "|" + req.Mode.String() + "|" + strings.ToLower(req.Host)
	}
	return k
}

// probeDomain is the domain whose limits and domain entries apply.
func probeDomain(req smtpprobe.Request) (domain string, byDomain bool) {
	switch req.Mode {
	case smtpprobe.MXFirst:
		if req.Host != "" {
			return strings.ToLower(req.Host), true
		}
		return req.Domain(), true
	case smtpprobe.MXOnly:
		return strings.ToLower(req.Host), true
	default:
		return strings.ToLower(req.Host), false
	}
}

// Verify answers one request: from the cache when it can, by joining a
// probe of the same address in flight, or by probing (progress gets the
// events of a probe this call runs itself). cached says the answer came
// from the cache.
func (v *Verifier) Verify(ctx context.Context, req smtpprobe.Request, progress func(smtpprobe.Event)) (out smtpprobe.Outcome, cached bool) {
	out, cached = v.verify(ctx, req, progress, false)
	v.c.results[out.Result%6].Add(1)
	return out, cached
}

func (v *Verifier) verify(ctx context.Context, req smtpprobe.Request, progress func(smtpprobe.Event), background bool) (smtpprobe.Outcome, bool) {
	v.init()
	v.c.requests.Add(1)
	cf := v.cur() // the settings of this request
	key := CacheKey(req)
	domain, byDomain := probeDomain(req)
	if cf.Cache != nil && !background {
		if e, ok, err := cf.Cache.Lookup(ctx, key); err != nil {
			v.cacheError(err)
		} else if ok {
			v.c.cacheHits.Add(1)
			return smtpprobe.Outcome{Result: e.Result}, true
		}
		if byDomain && domain != "" {
			if e, ok, err := cf.Cache.LookupDomain(ctx, domain); err != nil {
				v.cacheError(err)
			} else if ok {
				v.c.domainHits.Add(1)
				return smtpprobe.Outcome{Result: e.Result, Retry: e.Result == smtpprobe.TempFailure,
					DomainDead: e.Result != smtpprobe.TempFailure}, true
			}
		}
	}
	// Join a probe of the same key in flight.
	v.mu.Lock()
	if c, ok := v.inflight[key]; ok {
		v.mu.Unlock()
		v.c.deduped.Add(1)
		select {
		case <-c.done:
			return c.out, false
		case <-ctx.Done():
			return ctxOutcome(ctx), false
		}
	}
	c := &call{done: make(chan struct{})}
	v.inflight[key] = c
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		delete(v.inflight, key)
		v.mu.Unlock()
		close(c.done)
	}()
	c.out = v.probe(ctx, cf, req, key, domain, byDomain, progress)
	return c.out, false
}

func ctxOutcome(ctx context.Context) smtpprobe.Outcome {
	o := smtpprobe.Outcome{Result: smtpprobe.TempFailure, Retry: true, Err: ctx.Err()}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		o.Result = smtpprobe.Timeout
	}
	return o
}

func (v *Verifier) probe(ctx context.Context, cf *Verifier, req smtpprobe.Request, key, domain string, byDomain bool, progress func(smtpprobe.Event)) smtpprobe.Outcome {
	max := cf.MaxPending
	if max <= 0 {
		max = DefaultMaxPending
	}
	if n := v.c.pendingProbes.Add(1); n > int64(max) {
		v.c.pendingProbes.Add(-1)
		v.c.rejected.Add(1)
		return smtpprobe.Outcome{Result: smtpprobe.TempFailure, Retry: true, Err: ErrTooManyPending}
	}
	defer v.c.pendingProbes.Add(-1)
	limitKey := domain
	if limitKey == "" {
		limitKey = req.Domain()
	}
	release, waited, err := v.limiter.acquire(ctx, limitKey)
	if waited {
		v.c.limited.Add(1)
	}
	if err != nil {
		return ctxOutcome(ctx)
	}
	defer release()

	knownCatchAll := false
	if cf.CatchAll && cf.Cache != nil && req.Domain() != "" {
		ca, known, err := cf.Cache.LookupCatchAll(ctx, req.Domain())
		if err != nil {
			v.cacheError(err)
		}
		knownCatchAll = known && ca
		req.CatchAll = !known
	} else {
		req.CatchAll = cf.CatchAll
	}
	v.c.probes.Add(1)
	start := time.Now()
	out := cf.Prober.Probe(ctx, req, progress)
	v.c.probeNanos.Add(uint64(time.Since(start)))
	if cf.MailRefusedFailure && out.MailRefused && out.Result == smtpprobe.NotFound {
		out.Result = smtpprobe.Failure
	}
	if knownCatchAll && out.Result == smtpprobe.Success {
		out.CatchAll = true
	}
	if out.CatchAll {
		v.c.catchAll.Add(1)
	}
	if cf.Cache != nil && ctx.Err() == nil {
		if _, err := cf.Cache.Record(ctx, key, out.Result); err != nil {
			v.cacheError(err)
		}
		switch {
		case byDomain && domain != "" && out.DomainDead && req.Mode == smtpprobe.MXFirst:
			// (mxonly finding no MX says nothing of mxfirst, which falls
			// back to the domain's address; the converse holds.)
			v.cacheError(cf.Cache.RecordDead(ctx, domain, out.Result))
		case byDomain && domain != "" && out.Result == smtpprobe.TempFailure && out.Retry && !out.Greeted:
			v.cacheError(cf.Cache.RecordDown(ctx, domain))
		}
		if req.CatchAll && out.Result == smtpprobe.Success {
			v.cacheError(cf.Cache.RecordCatchAll(ctx, req.Domain(), out.CatchAll))
		}
	}
	return out
}

func (v *Verifier) cacheError(err error) {
	if err == nil {
		return
	}
	v.c.cacheErrors.Add(1)
	v.log().Warn("callout cache", "err", err)
}
