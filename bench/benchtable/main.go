// Command benchtable prints the multiplexer's benchmark table (make bench):
// every figure through pmult is set against a baseline measured in the same
// run, because the machine is shared and noisy.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mailmux/mailmux/bench"
	"github.com/mailmux/mailmux/internal/gotune"
)

type row struct {
	Backends   int     `json:"backends"`
	Reuse      bool    `json:"reuse"`
	Rate       float64 `json:"sessions_per_s"`
	DirectRate float64 `json:"direct_sessions_per_s"`
	Ratio      float64 `json:"ratio_to_direct"`
	Ideal      float64 `json:"zero_cost_mux_sessions_per_s"`
	RatioIdeal float64 `json:"ratio_to_zero_cost_mux"`
	AddedP50us float64 `json:"added_p50_us"`
	AddedP99us float64 `json:"added_p99_us"`
	PacedRate  float64 `json:"paced_sessions_per_s"`
	Errors     int     `json:"errors"`
}

func main() {
	bench.MaybeServeNull()
	gotune.SetGC()
	dur := flag.Duration("d", 3*time.Second, "duration of each load run")
	conc := flag.Int("c", 8, "concurrent sessions")
	asJSON := flag.Bool("json", false, "machine-readable output")
	flag.Parse()
	if err := run(*dur, *conc, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func run(dur time.Duration, conc int, asJSON bool) error {
	null, err := bench.StartNull(5, 0)
	if err != nil {
		return err
	}
	defer null.Stop()
	slow, err := bench.StartNull(3, 20*time.Millisecond)
	if err != nil {
		return err
	}
	defer slow.Stop()

	direct := bench.Load(null.Addrs[0], conc, dur, 0)
	ideal := map[int]float64{}
	for _, n := range []int{1, 3, 5} {
		ideal[n] = bench.FanoutLoad(null.Addrs[:n], conc, dur).Rate()
	}
	var rows []row
	for _, c := range []struct {
		n     int
		reuse bool
	}{{1, false}, {3, false}, {5, false}, {1, true}, {3, true}, {5, true}} {
		n := c.n
		mux, err := bench.StartMux(null.Addrs[:n], c.reuse)
		if err != nil {
			return err
		}
		sat := bench.Load(mux.Addr, conc, dur, 0)
		half := sat.Rate() / 2
		pm := bench.Load(mux.Addr, conc, dur, half)
		pd := bench.Load(null.Addrs[0], conc, dur, half)
		mux.Stop()
		m50, m99 := pm.Lat.Envelope()
		d50, d99 := pd.Lat.Envelope()
		rows = append(rows, row{Backends: n, Reuse: c.reuse, Rate: sat.Rate(), DirectRate: direct.Rate(),
			Ideal: ideal[n], RatioIdeal: sat.Rate() / ideal[n],
			Ratio: sat.Rate() / direct.Rate(), AddedP50us: us(m50 - d50), AddedP99us: us(m99 - d99),
			PacedRate: half, Errors: sat.Errors + pm.Errors + pd.Errors})
	}

	// CPU per session of pmult itself, in its own process (3 backends).
	cpu := map[bool]time.Duration{}
	for _, reuse := range []bool{false, true} {
		mp, err := bench.StartMuxProcess(null.Addrs[:3], reuse)
		if err != nil {
			return err
		}
		c0, _ := mp.CPUTime()
		r := bench.Load(mp.Addrs[0], conc, dur, 0)
		c1, err := mp.CPUTime()
		mp.Stop()
		if err != nil {
			return err
		}
		cpu[reuse] = (c1 - c0) / time.Duration(max(r.Sessions, 1))
	}

	// Heap per idle session: clients through pmult (3 backends) minus the
	// same clients talking to one null backend directly.
	const idle = 500
	hDirect, err := bench.IdleHeap(null.Addrs[0], idle)
	if err != nil {
		return err
	}
	mux3, err := bench.StartMux(null.Addrs[:3], false)
	if err != nil {
		return err
	}
	hMux, err := bench.IdleHeap(mux3.Addr, idle)
	mux3.Stop()
	if err != nil {
		return err
	}

	// Parallel envelope: 3 backends that take 20 ms per RCPT.
	muxSlow, err := bench.StartMux(slow.Addrs, false)
	if err != nil {
		return err
	}
	var slowRows [][4]time.Duration
	for _, rc := range []int{1, 5} {
		one, err := bench.SessionTime(slow.Addrs[0], 5, rc)
		if err != nil {
			return err
		}
		through, err := bench.SessionTime(muxSlow.Addr, 5, rc)
		if err != nil {
			return err
		}
		chain, err := bench.ChainTime(slow.Addrs, 5, rc)
		if err != nil {
			return err
		}
		slowRows = append(slowRows, [4]time.Duration{time.Duration(rc), one, through, chain})
	}
	muxSlow.Stop()

	// Synchronous backends (no pipelining): 3 of 20 ms at RCPT against one.
	syncOne, err := bench.SyncTime(1, 20*time.Millisecond, 5, 1)
	if err != nil {
		return err
	}
	syncThree, err := bench.SyncTime(3, 20*time.Millisecond, 5, 1)
	if err != nil {
		return err
	}

	// A callout backend answering MAIL from its cache (no probe).
	cc, err := bench.CalloutBench(20000)
	if err != nil {
		return err
	}

	// Conditions and the rule filter, in process.
	cb, err := bench.ConditionBench(20000)
	if err != nil {
		return err
	}
	fb, err := bench.FilterBench(20000)
	if err != nil {
		return err
	}

	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{
			"rows": rows, "idle_heap_per_session_bytes": hMux - hDirect,
			"cpu_per_session_us": us(cpu[false]), "cpu_per_session_reuse_us": us(cpu[true]),
			"direct_sessions_per_s":            direct.Rate(),
			"sync_rcpt_one_us":                 us(syncOne),
			"sync_rcpt_three_us":               us(syncThree),
			"callout_cached_mail_added_p99_us": us(cc.AddedMailP99()),
			"callout_no_probe_added_cpu_us":    us(cc.AddedCPU()),
			"condition_per_backend_stage_us":   us(cb.PerEval()),
			"filter_100_rules_added_cpu_us":    us(fb.Added()),
		})
	}
	fmt.Printf("pmult benchmark: %d concurrent sessions, %s per run, GOMAXPROCS=%d\n\n", conc, dur, runtimeProcs())
	fmt.Printf("direct client -> 1 null backend: %.0f sessions/s (baseline)\n\n", direct.Rate())
	fmt.Printf("%-9s %-6s %12s %10s %12s %16s %16s %12s %7s\n", "backends", "reuse", "sessions/s", "vs direct", "vs 0-cost", "added p50 (µs)", "added p99 (µs)", "at (sess/s)", "errors")
	for _, r := range rows {
		fmt.Printf("%-9d %-6v %12.0f %9.0f%% %11.0f%% %16.1f %16.1f %12.0f %7d\n", r.Backends, r.Reuse, r.Rate, 100*r.Ratio, 100*r.RatioIdeal,
			r.AddedP50us, r.AddedP99us, r.PacedRate, r.Errors)
	}
	fmt.Printf("\n'vs 0-cost': against a client that sends each event to the same backends itself, in\n"+
		"parallel (a multiplexer costing nothing; %.0f, %.0f, %.0f sessions/s for 1, 3, 5 backends):\n"+
		"on one machine the backends' own work bounds any multiplexer's rate.\n", ideal[1], ideal[3], ideal[5])
	fmt.Printf("\npmult's own CPU per session (own process, 3 backends, 13 commands): %s, with reuse %s\n",
		cpu[false].Round(time.Microsecond), cpu[true].Round(time.Microsecond))
	fmt.Printf("\nheap per idle session through pmult (3 backends): %.1f KiB (client-side %.1f KiB subtracted)\n",
		(hMux-hDirect)/1024, hDirect/1024)
	fmt.Printf("\nbackends sleeping 20 ms per RCPT, mean session time:\n")
	fmt.Printf("%-6s %14s %18s %22s\n", "rcpts", "one backend", "pmult, 3 backends", "serial chain of 3")
	for _, r := range slowRows {
		fmt.Printf("%-6d %14s %18s %22s\n", int(r[0]), r[1].Round(100*time.Microsecond),
			r[2].Round(100*time.Microsecond), r[3].Round(100*time.Microsecond))
	}
	fmt.Printf("\nsynchronous backends (no pipelining) sleeping 20 ms per RCPT, 1 rcpt, mean session time:\n")
	fmt.Printf("one backend %s, three backends %s (%+.1f%%; target within 10%%)\n",
		syncOne.Round(100*time.Microsecond), syncThree.Round(100*time.Microsecond),
		100*(float64(syncThree)/float64(syncOne)-1))
	fmt.Printf("\ncallout backend, MAIL answered from its cache (in process, vs one continue backend):\n")
	fmt.Printf("MAIL p99 %s vs %s: added %s (target <= 100 µs); CPU per message %s vs %s: added %s (target <= 20 µs)\n",
		cc.CalloutMailP99.Round(100*time.Nanosecond), cc.BaseMailP99.Round(100*time.Nanosecond), cc.AddedMailP99().Round(100*time.Nanosecond),
		cc.CalloutCPU.Round(100*time.Nanosecond), cc.BaseCPU.Round(100*time.Nanosecond), cc.AddedCPU().Round(100*time.Nanosecond))
	fmt.Printf("\nconditions (in process, 5 continue backends each with a condition: client not in a 10,000-entry\n" +
		"CIDR list and no X-Spam header, asked at MAIL, RCPT, DATA, each header and EOH; vs the same without):\n")
	fmt.Printf("CPU per message %s vs %s over %d evaluations: %s per backend and stage (target <= 1 µs)\n",
		cb.CPU.Round(100*time.Nanosecond), cb.BaseCPU.Round(100*time.Nanosecond), cb.Evals, cb.PerEval().Round(10*time.Nanosecond))
	fmt.Printf("\nrule filter, 100 rules and a 10,000-entry CIDR list (in process, vs one continue backend):\n")
	fmt.Printf("CPU per message %s vs %s: added %s (target <= 20 µs)\n",
		fb.CPU.Round(100*time.Nanosecond), fb.BaseCPU.Round(100*time.Nanosecond), fb.Added().Round(100*time.Nanosecond))
	return smtpFrontLine(null.Addrs[:3], conc, dur)
}

// smtpFrontLine prints messages/s through the SMTP front against the
// milter front, same null backends, same run (target >= 0.9x).
func smtpFrontLine(backends []string, conc int, dur time.Duration) error {
	c, err := bench.CompareFronts(backends, conc, dur)
	if err != nil {
		return err
	}
	fmt.Printf("\nSMTP front vs milter front, %d null backends, messages/s, same run (target >= 0.9x):\n", c.Backends)
	fmt.Printf("SMTP %.0f (relaying each message to a next hop), milter %.0f: %.2fx; SMTP without the next hop %.0f: %.2fx; %d errors\n",
		c.SMTPRate, c.MilterRate, c.Ratio(), c.NoHopRate, c.NoHopRatio(), c.Errors)
	return nil
}
