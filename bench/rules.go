// rules.go: what conditions and the rule filter cost, in process (no
// network): a condition per backend and stage, and the filter with 100
// rules and a 10,000-entry CIDR list per message, each against a same-run
// baseline (the same engine without the conditions; one backend answering
// continue instead of the filter), in alternating rounds.

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailmux/mailmux/backends/filter"
	"github.com/mailmux/mailmux/internal/cond"
	"github.com/mailmux/mailmux/pmult"
)

// RulesCost is ConditionBench's or FilterBench's result: CPU per message
// (CONNECT to EOM, one recipient) of the baseline and of the measured
// engine, and for conditions how many evaluations a message took.
type RulesCost struct {
	BaseCPU, CPU time.Duration
	// Evals is the condition evaluations per message (all backends):
	// the added CPU divided by it is the cost per backend and stage.
	Evals int
}

// Added is the added CPU per message.
func (c RulesCost) Added() time.Duration { return c.CPU - c.BaseCPU }

// PerEval is the added CPU per condition evaluation (per backend and
// stage), the facts bookkeeping included.
func (c RulesCost) PerEval() time.Duration {
	if c.Evals == 0 {
		return 0
	}
	return c.Added() / time.Duration(c.Evals)
}

// CIDRList writes the benchmarks' 10,000-entry CIDR list file into dir
// and returns its path.
func CIDRList(dir string) (string, error) {
	var b strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, "10.%d.%d.0/24\n", i/256, i%256)
	}
	path := filepath.Join(dir, "nets")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func nullBackend(name string, caps pmult.Caps) pmult.Backend {
	return pmult.Func(name, caps, func(context.Context, *pmult.Event) (pmult.Reply, error) { return pmult.Reply{}, nil })
}

// runMessages runs n sessions of one message through e and returns the
// process CPU they took.
func runMessages(e *pmult.Engine, n int) (time.Duration, error) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	c0 := cpuNow()
	for i := 0; i < n; i++ {
		s := e.NewSession("bench", log)
		s.Open(ctx, mtaOffer, nil)
		for _, ev := range script(1) {
			if r := s.Handle(ctx, ev); r.Verdict.Objects() {
				s.Close()
				return 0, fmt.Errorf("%s at %s", r.Verdict, ev.Kind)
			}
		}
		s.Close()
	}
	return cpuNow() - c0, nil
}

// alternate runs k sessions through each engine in alternating rounds
// and returns the CPU per message of each.
func alternate(base, e *pmult.Engine, k int) (time.Duration, time.Duration, error) {
	const rounds = 10
	var cb, ce time.Duration
	for r := 0; r < rounds; r++ {
		d, err := runMessages(base, k/rounds)
		if err != nil {
			return 0, 0, err
		}
		cb += d
		if d, err = runMessages(e, k/rounds); err != nil {
			return 0, 0, err
		}
		ce += d
	}
	n := time.Duration(k / rounds * rounds)
	return cb / n, ce / n, nil
}

// counting counts a condition's evaluations (calibration only).
type counting struct {
	pmult.Condition
	n *int
}

func (c counting) Eval(f *pmult.Facts) pmult.Tri { *c.n++; return c.Condition.Eval(f) }

// ConditionBench: 5 backends answering continue, each with a condition
// (the client in a 10,000-entry CIDR list file, and no X-Spam header:
// decided at EOH, so it is asked at MAIL, RCPT, DATA, each header and
// EOH), against the same 5 backends without conditions.
func ConditionBench(k int) (RulesCost, error) {
	dir, err := os.MkdirTemp("", "bench-cond-")
	if err != nil {
		return RulesCost{}, err
	}
	defer os.RemoveAll(dir)
	list, err := CIDRList(dir)
	if err != nil {
		return RulesCost{}, err
	}
	c, errs := cond.Compile("if", map[string]any{"all": []any{
		map[string]any{"not": map[string]any{"client_file": list}},
		map[string]any{"not": map[string]any{"header": "X-Spam"}},
	}})
	if errs != nil {
		return RulesCost{}, errs[0]
	}
	engine := func(c pmult.Condition) *pmult.Engine {
		e := &pmult.Engine{QuietDecisions: true}
		for i := 0; i < 5; i++ {
			e.Slots = append(e.Slots, pmult.Slot{Backend: nullBackend(fmt.Sprintf("b%d", i), pmult.Caps{}),
				Policy: pmult.Policy{Condition: c}})
		}
		return e
	}
	evals := 0
	if _, err := runMessages(engine(counting{c, &evals}), 1); err != nil {
		return RulesCost{}, err
	}
	base, with, err := alternate(engine(nil), engine(c), k)
	return RulesCost{BaseCPU: base, CPU: with, Evals: evals}, err
}

// FilterBench: the rule filter with 100 rules (one on a 10,000-entry
// CIDR list file; sender, recipient and header regular expressions; a
// delete_header and an add_header) as the only backend, against one
// backend answering continue that may edit headers.
func FilterBench(k int) (RulesCost, error) {
	dir, err := os.MkdirTemp("", "bench-filter-")
	if err != nil {
		return RulesCost{}, err
	}
	defer os.RemoveAll(dir)
	fe, err := filterEngine(dir)
	if err != nil {
		return RulesCost{}, err
	}
	base := &pmult.Engine{QuietDecisions: true, Slots: []pmult.Slot{{Backend: nullBackend("null",
		pmult.Caps{Actions: pmult.ActAddHeaders | pmult.ActChangeHeaders})}}}
	b, f, err := alternate(base, fe, k)
	return RulesCost{BaseCPU: b, CPU: f}, err
}

// filterEngine is an engine whose only backend is the benchmark's filter
// (its list file in dir).
func filterEngine(dir string) (*pmult.Engine, error) {
	list, err := CIDRList(dir)
	if err != nil {
		return nil, err
	}
	text := FilterRules(list)
	s, errs := filter.ParseConfig(func(v any) error { _, err := toml.Decode(text, v); return err })
	if errs != nil {
		return nil, errs[0]
	}
	if n := len(s.Rules); n != 100 {
		return nil, fmt.Errorf("filter bench: %d rules, want 100", n)
	}
	return &pmult.Engine{QuietDecisions: true, Slots: []pmult.Slot{{Backend: s.NewBackend("rules", 0, nil)}}}, nil
}

// FilterRules is the benchmarks' filter rule set of 100 rules (also
// BenchmarkFilterMessage's): reject the clients in listFile (see
// CIDRList), 97 sender, Subject and recipient-domain rules, one
// delete_header and one add_header.
func FilterRules(listFile string) string {
	var rules strings.Builder
	fmt.Fprintf(&rules, "[[rule]]\nmatch = { client_file = %q }\naction = \"reject\"\n", listFile)
	for i := 0; i < 97; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&rules, "[[rule]]\nmatch = { sender_regex = 'spam%d@' }\naction = \"reject\"\n", i)
		case 1:
			fmt.Fprintf(&rules, "[[rule]]\nmatch = { header_regex = { Subject = 'offer %d' } }\naction = \"discard\"\n", i)
		case 2:
			fmt.Fprintf(&rules, "[[rule]]\nmatch = { rcpt_domain = \"d%d.example\" }\naction = \"tempfail\"\n", i)
		}
	}
	rules.WriteString("[[rule]]\naction = \"delete_header\"\nname = \"Authentication-Results\"\nvalue_regex = '^\\s*mx\\.example\\.org;'\n")
	rules.WriteString("[[rule]]\naction = \"add_header\"\nname = \"X-Filtered\"\nvalue = \"yes\"\n")
	return rules.String()
}
