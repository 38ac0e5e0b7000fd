// stats.go: counters of the Verifier and the Server, and their rendering in
// the Prometheus text format (WritePrometheus) for calloutd's /metrics.

package callout

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// counters are updated atomically.
type counters struct {
	requests      atomic.Uint64
	probes        atomic.Uint64
	results       [6]atomic.Uint64 // by smtpprobe.Result
	cacheHits     atomic.Uint64
	domainHits    atomic.Uint64
	deduped       atomic.Uint64
	rejected      atomic.Uint64
	limited       atomic.Uint64
	catchAll      atomic.Uint64
	probeNanos    atomic.Uint64
	bgQueued      atomic.Uint64
	bgDone        atomic.Uint64
	bgDropped     atomic.Uint64
	cacheErrors   atomic.Uint64
	sessions      atomic.Uint64
	sessionsOpen  atomic.Int64
	commands      atomic.Uint64
	errorReplies  atomic.Uint64
	pendingProbes atomic.Int64
}

// Stats is a snapshot of the counters.
type Stats struct {
	Requests       uint64            // addresses asked for (VRFY run, Verify calls)
	Probes         uint64            // SMTP probes started
	Results        map[string]uint64 // answers by result name (cached ones included)
	CacheHits      uint64            // answered from the address cache
	DomainHits     uint64            // answered from a dead/down domain entry
	Deduped        uint64            // joined a probe of the same key in flight
	Rejected       uint64            // refused: too many probes pending
	RateLimited    uint64            // waited for a per-domain limit
	CatchAll       uint64            // successes on catch-all domains
	ProbeSeconds   float64           // total time spent probing
	PendingProbes  int64             // probes running or waiting for a limit now
	BgQueued       uint64            // addresses queued for background completion
	BgDone         uint64            // background probes finished
	BgDropped      uint64            // background queue full
	CacheErrors    uint64            // store errors (the probe went on)
	Sessions       uint64            // protocol connections accepted
	SessionsOpen   int64             // protocol connections open now
	Commands       uint64            // protocol commands read
	ErrorReplies   uint64            // NO replies sent
	TrackedDomains int               // domains with probes in flight
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Requests: c.requests.Load(), Probes: c.probes.Load(), Results: map[string]uint64{},
		CacheHits: c.cacheHits.Load(), DomainHits: c.domainHits.Load(), Deduped: c.deduped.Load(),
		Rejected: c.rejected.Load(), RateLimited: c.limited.Load(), CatchAll: c.catchAll.Load(),
		ProbeSeconds:  time.Duration(c.probeNanos.Load()).Seconds(),
		PendingProbes: c.pendingProbes.Load(), BgQueued: c.bgQueued.Load(), BgDone: c.bgDone.Load(),
		BgDropped: c.bgDropped.Load(), CacheErrors: c.cacheErrors.Load(),
		Sessions: c.sessions.Load(), SessionsOpen: c.sessionsOpen.Load(),
		Commands: c.commands.Load(), ErrorReplies: c.errorReplies.Load(),
	}
	for r := smtpprobe.Success; r <= smtpprobe.Timeout; r++ {
		s.Results[r.String()] = c.results[r].Load()
	}
	return s
}

// WritePrometheus writes the snapshot in the Prometheus text format, with
// metric names prefixed "calloutd_".
func (s Stats) WritePrometheus(w io.Writer) error {
	type m struct {
		name, typ, help string
		v               float64
	}
	ms := []m{
		{"requests_total", "counter", "Addresses asked for.", float64(s.Requests)},
		{"probes_total", "counter", "SMTP probes started.", float64(s.Probes)},
		{"cache_hits_total", "counter", "Answers from the address cache.", float64(s.CacheHits)},
		{"domain_cache_hits_total", "counter", "Answers from a dead or down domain entry.", float64(s.DomainHits)},
		{"deduplicated_total", "counter", "Requests that joined a probe in flight.", float64(s.Deduped)},
		{"rejected_total", "counter", "Requests refused because too many probes were pending.", float64(s.Rejected)},
		{"rate_limited_total", "counter", "Probes that waited for a per-domain limit.", float64(s.RateLimited)},
		{"catch_all_total", "counter", "Successes on catch-all domains.", float64(s.CatchAll)},
		{"probe_seconds_total", "counter", "Time spent probing.", s.ProbeSeconds},
		{"pending_probes", "gauge", "Probes running or waiting now.", float64(s.PendingProbes)},
		{"background_queued_total", "counter", "Addresses queued for background completion.", float64(s.BgQueued)},
		{"background_done_total", "counter", "Background probes finished.", float64(s.BgDone)},
		{"background_dropped_total", "counter", "Addresses dropped: background queue full.", float64(s.BgDropped)},
		{"cache_errors_total", "counter", "Cache store errors.", float64(s.CacheErrors)},
		{"sessions_total", "counter", "Protocol connections accepted.", float64(s.Sessions)},
		{"sessions_open", "gauge", "Protocol connections open.", float64(s.SessionsOpen)},
		{"commands_total", "counter", "Protocol commands read.", float64(s.Commands)},
		{"error_replies_total", "counter", "NO replies sent.", float64(s.ErrorReplies)},
		{"tracked_domains", "gauge", "Domains with probes in flight.", float64(s.TrackedDomains)},
	}
	for _, x := range ms {
		if _, err := fmt.Fprintf(w, "# HELP calloutd_%s %s\n# TYPE calloutd_%s %s\ncalloutd_%s %g\n", x.name, x.help, x.name, x.typ, x.name, x.v); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "# HELP calloutd_results_total Answers by result.\n# TYPE calloutd_results_total counter\n")
	for r := smtpprobe.Success; r <= smtpprobe.Timeout; r++ {
		if _, err := fmt.Fprintf(w, "calloutd_results_total{result=%q} %d\n", r.String(), s.Results[r.String()]); err != nil {
			return err
		}
	}
	return nil
}
