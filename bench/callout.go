// callout.go: what a callout backend (backends/callout) costs when no
// probe is needed: MAIL answered from its cache (memory store), against a
// same-run baseline of one stateless backend answering continue, in the
// same engine, in process (no network on either side).

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"syscall"
	"time"

	calloutbe "github.com/mailmux/mailmux/backends/callout"
	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/callout/cache"
	"github.com/mailmux/mailmux/callout/smtpprobe"
	"github.com/mailmux/mailmux/pmult"
)

// CalloutCost is CalloutBench's result: the p99 of MAIL and the CPU per
// message (CONNECT to EOM, one recipient), baseline and callout.
type CalloutCost struct {
	BaseMailP99, CalloutMailP99 time.Duration
	BaseCPU, CalloutCPU         time.Duration
}

// AddedMailP99 is what the callout backend adds to MAIL's p99.
func (c CalloutCost) AddedMailP99() time.Duration { return c.CalloutMailP99 - c.BaseMailP99 }

// AddedCPU is what it adds to the CPU of a message.
func (c CalloutCost) AddedCPU() time.Duration { return c.CalloutCPU - c.BaseCPU }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CalloutBench runs k sessions of one message through each engine,
// alternating rounds so that both see the same machine.
func CalloutBench(k int) (CalloutCost, error) {
	ctx := context.Background()
	base := &pmult.Engine{Slots: []pmult.Slot{{Backend: pmult.Func("null", pmult.Caps{},
		func(context.Context, *pmult.Event) (pmult.Reply, error) { return pmult.Reply{}, nil })}}}
	st := &cache.Memory{}
	c := &cache.Cache{Store: st}
	if _, err := c.Record(ctx, callout.CacheKey(smtpprobe.Request{Email: "sender@example.org"}), smtpprobe.Success); err != nil {
		return CalloutCost{}, err
	}
	be := calloutbe.New(calloutbe.Config{Name: "sav", Log: slog.New(slog.DiscardHandler),
		Sender:    calloutbe.Target{Verdicts: calloutbe.SenderVerdicts()},
		Prober:    &smtpprobe.Prober{Resolver: &smtpprobe.Resolver{Servers: []string{"127.0.0.1:1"}}},
		OpenCache: func(context.Context) (*cache.Cache, error) { return c, nil },
		MaxWait:   time.Second})
	defer be.Retire()
	sav := &pmult.Engine{Slots: []pmult.Slot{{Backend: be}}}
	run := func(e *pmult.Engine, n int, lat *[]time.Duration) (time.Duration, error) {
		c0 := cpuNow()
		for i := 0; i < n; i++ {
			s := e.NewSession("bench", slog.New(slog.DiscardHandler))
			s.Open(ctx, mtaOffer, nil)
			for _, ev := range script(1) {
				t := time.Now()
				r := s.Handle(ctx, ev)
				if ev.Kind == pmult.KindMail {
					*lat = append(*lat, time.Since(t))
				}
				if r.Verdict.Objects() {
					s.Close()
					return 0, fmt.Errorf("%s at %s", r.Verdict, ev.Kind)
				}
			}
			s.Close()
		}
		return cpuNow() - c0, nil
	}
	var lb, lc []time.Duration
	var cb, cc time.Duration
	const rounds = 10
	for r := 0; r < rounds; r++ {
		d, err := run(base, k/rounds, &lb)
		if err != nil {
			return CalloutCost{}, err
		}
		cb += d
		if d, err = run(sav, k/rounds, &lc); err != nil {
			return CalloutCost{}, err
		}
		cc += d
	}
	if st := be.Verifier().Stats(); st.Probes != 0 || st.CacheHits == 0 {
		return CalloutCost{}, fmt.Errorf("callout bench: MAIL was not answered from the cache: %+v", st)
	}
	slices.Sort(lb)
	slices.Sort(lc)
	n := time.Duration(len(lb))
	return CalloutCost{BaseMailP99: pct(lb, 99), CalloutMailP99: pct(lc, 99), BaseCPU: cb / n, CalloutCPU: cc / n}, nil
}
