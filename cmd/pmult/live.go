// live.go: `pmult check --live` (issue 12): connect to every backend,
// negotiate as Postfix would, and print per backend whether it is
// reachable, its milter version, actions, the events it skips and, per
// stage, the macros it asks for and who provides each: the MTA's list
// ([mta_macros] or the MTA defaults), the MTA when pmult asks for the
// list itself (a macro Postfix or Sendmail has), a [macros] table, pmult
// (derived), or nobody. Exit 1 when a backend is unreachable or starved.

package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// probe is what one backend negotiated.
type probe struct {
	name    string
	err     error
	version uint32
	caps    pmult.Caps
}

// liveOffer is what pmult offers backends for a Postfix 3 front.
var liveOffer = pmult.Offer{Actions: pmult.ActModify | pmult.ActQuarantine, SymList: true, Skip: true,
	RejectedRcpts: true, LeadingSpace: true, Version: 6, Front: "milter"}

// probeBackends negotiates once with every backend of eng.
func probeBackends(eng *pmult.Engine) []probe {
	var out []probe
	for _, sl := range eng.Slots {
		p := probe{name: sl.Backend.Name()}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := sl.Backend.Open(ctx, pmult.OpenInfo{Offer: liveOffer, Deadline: time.Now().Add(10 * time.Second)})
		cancel()
		if err != nil {
			p.err = err
		} else {
			p.caps = s.Caps()
			if v, ok := s.(interface{ ProtocolVersion() uint32 }); ok {
				p.version = v.ProtocolVersion()
			}
			s.Close()
		}
		out = append(out, p)
	}
	return out
}

// provider says who gives macro name at stage st: "mta-list" (the MTA's
// own list), "mta" (pmult asks the MTA for it), "table", "pmult"
// (derived) or "" (nobody).
func provider(cfg *config.Config, st macros.Stage, name string) string {
	n := macros.Normalize(name)
	for _, m := range cfg.MTAMacros.Baseline(st) {
		if macros.Normalize(m) == n {
			return "mta-list"
		}
	}
	if cfg.Macros.Global.Provides(st, n) {
		return "table"
	}
	for _, t := range cfg.Macros.Listener {
		if t.Provides(st, n) {
			return "table"
		}
	}
	if macros.CanDerive(st, n) {
		return "pmult"
	}
	if slices.Contains(macros.MTAKnown, n) {
		return "mta"
	}
	return ""
}

// kindStages are the event kinds with a macro stage, in stage order.
var kindStages = []pmult.Kind{pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt,
	pmult.KindData, pmult.KindEOH, pmult.KindEOM}

// actionNames names the action bits.
func actionNames(a pmult.Actions) string {
	names := []string{"add_headers", "change_body", "add_rcpt", "del_rcpt", "change_headers",
		"quarantine", "change_from", "add_rcpt_par", "setsymlist"}
	var out []string
	for i, n := range names {
		if a&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

// checkLive prints the table and returns whether every backend is
// reachable and fed.
func checkLive(cfg *config.Config, stdout io.Writer) bool {
	eng, err := cfg.Engine(nil)
	if err != nil {
		fmt.Fprintln(stdout, "pmult:", err)
		return false
	}
	ok := true
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tREACHABLE\tVERSION\tACTIONS\tSKIPS\tMACROS (stage: name=provider)")
	for _, p := range probeBackends(eng) {
		if p.err != nil {
			ok = false
			fmt.Fprintf(tw, "%s\tno: %v\t-\t-\t-\t-\n", p.name, p.err)
			continue
		}
		var skips []string
		for k := pmult.KindConnect; k <= pmult.KindUnknown; k++ {
			if p.caps.NoEvent.Has(k) {
				skips = append(skips, k.String())
			}
		}
		var ms []string
		for _, k := range kindStages {
			st, _ := pmult.MacroStage(k)
			var names []string
			for _, n := range p.caps.Macros[k] {
				who := provider(cfg, st, n)
				if who == "" {
					who = "NOBODY"
					ok = false
				}
				names = append(names, macros.Wire(n)+"="+who)
			}
			if len(names) > 0 {
				ms = append(ms, st.String()+": "+strings.Join(names, " "))
			}
		}
		if len(ms) == 0 {
			ms = []string{"(none asked: gets what the MTA sends)"}
		}
		if len(skips) == 0 {
			skips = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\tyes\t%d\t%s\t%s\t%s\n", p.name, p.version, actionNames(p.caps.Actions), strings.Join(skips, ","), strings.Join(ms, "; "))
	}
	tw.Flush()
	return ok
}
