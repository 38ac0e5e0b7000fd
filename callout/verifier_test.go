// verifier_test.go: the Verifier's cache use, deduplication, per-domain
// concurrency and rate limits, the pending cap, catch-all detection and
// dead domains.

package callout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout/callouttest"
	"github.com/mailmux/mailmux/callout/smtpprobe"
)

// limitWorld is one domain, lim.test, on a target that takes delay per reply.
func limitWorld(t *testing.T, delay time.Duration, o callouttest.SMTPOptions) (*world, *callouttest.SMTPServer) {
	w := newWorld(t, 2525, 0)
	o.Delay = delay
	s := callouttest.StartSMTP(t, w.net.Addr(30, 2525), o)
	w.dns.Add(t, "lim.test. 60 IN MX 10 mx.lim.test.", "mx.lim.test. 60 IN A "+w.net.IP(30),
		"other.test. 60 IN MX 10 mx.lim.test.")
	return w, s
}

func verifyAll(v *Verifier, reqs []smtpprobe.Request) []smtpprobe.Outcome {
	out := make([]smtpprobe.Outcome, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], _ = v.Verify(context.Background(), r, nil)
		}()
	}
	wg.Wait()
	return out
}

func TestDomainLimits(t *testing.T) {
	noLeaks(t)
	w, s := limitWorld(t, 20*time.Millisecond, callouttest.SMTPOptions{})
	v := &Verifier{Prober: w.prober(2 * time.Second), DomainConcurrency: 2, DomainRate: -1}
	defer v.Close()
	var reqs []smtpprobe.Request
	for i := 0; i < 8; i++ {
		reqs = append(reqs, smtpprobe.Request{Email: fmt.Sprintf("good%d@lim.test", i)})
	}
	for _, o := range verifyAll(v, reqs) {
		if o.Result != Success {
			t.Errorf("%+v", o)
		}
	}
	if p := s.Peak(); p > 2 {
		t.Errorf("%d probes of one domain at once, limit 2", p)
	}
	if st := v.Stats(); st.RateLimited == 0 {
		t.Errorf("no probe waited: %+v", st)
	}

	// Rate: a bucket of 2 that (practically) never refills: two probes
	// pass at once, the next ones wait for a token (each here until its
	// context ends, an event rather than a clock), and a later probe does
	// too: the bucket outlives the probe.
	v2 := &Verifier{Prober: w.prober(2 * time.Second), DomainConcurrency: 10, DomainRate: 1e-9, DomainBurst: 2}
	defer v2.Close()
	reqs = reqs[:0]
	for i := 0; i < 2; i++ {
		reqs = append(reqs, smtpprobe.Request{Email: fmt.Sprintf("good%d@other.test", i)})
	}
	for _, o := range verifyAll(v2, reqs) {
		if o.Result != Success {
			t.Errorf("within the burst: %+v", o)
		}
	}
	if st := v2.Stats(); st.RateLimited != 0 {
		t.Errorf("within the burst, %d probes waited", st.RateLimited)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 2; i++ {
		o, _ := v2.Verify(ctx, smtpprobe.Request{Email: fmt.Sprintf("seq%d@other.test", i)}, nil)
		if o.Result != TempFailure || !errors.Is(o.Err, context.Canceled) {
			t.Errorf("probe %d after the burst: %+v, want a temporary failure of the wait for a token", i, o)
		}
	}
	if st := v2.Stats(); st.RateLimited != 2 {
		t.Errorf("after the burst, %d probes waited, want 2", st.RateLimited)
	}
}

func TestDedupPendingCapCatchAll(t *testing.T) {
	noLeaks(t)
	w, s := limitWorld(t, 50*time.Millisecond, callouttest.SMTPOptions{CatchAll: true})
	v := &Verifier{Prober: w.prober(2 * time.Second), Cache: newMemCache(), CatchAll: true, DomainRate: -1}
	defer v.Close()
	// Five requests for one address: one probe.
	reqs := make([]smtpprobe.Request, 5)
	for i := range reqs {
		reqs[i] = smtpprobe.Request{Email: "good@lim.test"}
	}
	for _, o := range verifyAll(v, reqs) {
		if o.Result != Success || !o.CatchAll {
			t.Errorf("%+v", o)
		}
	}
	if st := v.Stats(); st.Probes != 1 || st.Deduped != 4 || s.Connections() != 1 {
		t.Errorf("dedup: %+v, %d connections", st, s.Connections())
	}
	// The catch-all finding is cached per domain: no random RCPT next time.
	rcpts := s.Rcpts()
	if o, _ := v.Verify(context.Background(), smtpprobe.Request{Email: "good2@lim.test"}, nil); !o.CatchAll || s.Rcpts() != rcpts+1 {
		t.Errorf("catch-all not cached: %+v, rcpts %d -> %d", o, rcpts, s.Rcpts())
	}

	// Pending cap 1: of three concurrent probes of different addresses two
	// are refused at once.
	v2 := &Verifier{Prober: w.prober(2 * time.Second), MaxPending: 1, DomainRate: -1}
	defer v2.Close()
	outs := verifyAll(v2, []smtpprobe.Request{{Email: "good1@lim.test"}, {Email: "good2@lim.test"}, {Email: "good3@lim.test"}})
	refused := 0
	for _, o := range outs {
		if o.Err == ErrTooManyPending {
			refused++
			if o.Result != TempFailure {
				t.Errorf("refused with %v", o.Result)
			}
		}
	}
	if refused != 2 || v2.Stats().Rejected != 2 {
		t.Errorf("refused %d, stats %+v", refused, v2.Stats())
	}
}

func TestCachePolicyThroughVerifier(t *testing.T) {
	noLeaks(t)
	w := newWorld(t, 2525, 0)
	c := newMemCache()
	v := &Verifier{Prober: w.prober(time.Second), Cache: c}
	defer v.Close()
	ctx := context.Background()
	check := func(email string, want Result, wantCached bool) {
		t.Helper()
		o, cached := v.Verify(ctx, smtpprobe.Request{Email: email}, nil)
		if o.Result != want || cached != wantCached {
			t.Errorf("%s: %v cached=%v, want %v cached=%v (%v)", email, o.Result, cached, want, wantCached, o.Err)
		}
	}
	check("good@fast.test", Success, false)
	check("good@fast.test", Success, true)
	check("bad@fast.test", NotFound, false)
	check("bad@fast.test", NotFound, true)
	check("grey@fast.test", TempFailure, false)
	check("grey@fast.test", TempFailure, false) // never cached
	// Dead domains are answered per domain, without DNS.
	check("a@nx.test", NotFound, false)
	q := w.dns.Queries()
	check("b@nx.test", NotFound, true)
	check("c@nullmx.test", Failure, false)
	check("d@nullmx.test", Failure, true)
	if w.dns.Queries() != q+1 {
		t.Errorf("dead domain asked again: %d queries", w.dns.Queries()-q)
	}
	// A domain whose hosts are down is remembered for a while too.
	w.dns.Add(t, "down.test. 60 IN MX 10 mx.down.test.", "mx.down.test. 60 IN A "+w.net.IP(99))
	check("a@down.test", TempFailure, false)
	check("b@down.test", TempFailure, true)
	// hostonly answers are cached under their own key.
	o, cached := v.Verify(ctx, smtpprobe.Request{Email: "good@fast.test", Mode: smtpprobe.HostOnly, Host: w.net.IP(2)}, nil)
	if o.Result != Success || cached {
		t.Errorf("hostonly: %v cached=%v", o.Result, cached)
	}
}

// mxonly finding no MX says nothing of mxfirst, which falls back to the
// domain's address: no dead-domain entry (the interop transcript's
// good@anoly.test came out not_found when the mxonly probe of anoly.test
// finished first in a parallel RUN).
func TestMXOnlyNoMXIsNotDeadForMXFirst(t *testing.T) {
	noLeaks(t)
	w := newWorld(t, 2525, 0)
	v := &Verifier{Prober: w.prober(time.Second), Cache: newMemCache()}
	defer v.Close()
	ctx := context.Background()
	if o, _ := v.Verify(ctx, smtpprobe.Request{Email: "good@x.test", Mode: smtpprobe.MXOnly, Host: "anoly.test"}, nil); o.Result != NotFound || !o.DomainDead {
		t.Fatalf("mxonly of an A-only domain: %+v", o)
	}
	if o, cached := v.Verify(ctx, smtpprobe.Request{Email: "good@anoly.test"}, nil); o.Result != Success || cached {
		t.Errorf("mxfirst after it: %+v cached=%v, want a probe answering success", o, cached)
	}
	// A domain without MX and without address is dead for both.
	if o, _ := v.Verify(ctx, smtpprobe.Request{Email: "a@nullmx.test"}, nil); o.Result != Failure || !o.DomainDead {
		t.Fatalf("null MX: %+v", o)
	}
	if o, cached := v.Verify(ctx, smtpprobe.Request{Email: "b@x.test", Mode: smtpprobe.MXOnly, Host: "nullmx.test"}, nil); !cached || !o.DomainDead {
		t.Errorf("mxonly of a dead domain: %+v cached=%v, want the domain entry", o, cached)
	}
}
