// macros.go: what one backend gets of the MTA's macros (issue 12). A
// filter that asked for a list at a stage (SMFIR_SETSYMLIST) gets exactly
// those macros there: from what the MTA sent (as the engine's tables and
// this backend's own table translated it), else from what the engine
// derived (pmult.MacroSet.Synth). At a stage it asked nothing for, it gets
// what the MTA sent (translated). A macro asked for that is neither is
// logged once per backend and macro, naming the MTA setting that would
// provide it, unless a backend before it may set it (OpenInfo.Assigned).
//
// Macros an earlier backend in the chain assigned (pmult.Reply.Macros,
// pmult/assign.go) come in the stage set's Pairs, after the MTA's: they
// are sent, and translated by this backend's table, exactly as the MTA's.
//
// pmult offers SETSYMLIST to every filter, whatever the MTA can do: the
// lists are honoured here.

package milter

import (
	"fmt"

	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// macroPairs returns the pairs of m to send this filter.
func (s *session) macroPairs(m pmult.MacroSet) []string {
	st, ok := pmult.MacroStage(m.For)
	if !ok {
		return m.Pairs
	}
	pairs := s.b.cfg.Macros.Apply(st, m.Pairs)
	asked := s.caps.Macros[m.For]
	if len(asked) == 0 {
		return pairs
	}
	wire := s.askedWire[m.For]
	out := make([]string, 0, 2*len(asked))
	for i, name := range asked {
		if v, ok := macros.Lookup(pairs, name); ok {
			out = append(out, wire[i], v)
		} else if v, ok := macros.Lookup(m.Synth, name); ok {
			out = append(out, wire[i], v)
		} else if !s.mayBeAssigned(st, name) {
			s.b.starved(s.offer.Front, st, name)
		}
	}
	return out
}

// mayBeAssigned reports whether a backend before this one may set name
// (as this backend's table names it).
func (s *session) mayBeAssigned(st macros.Stage, name string) bool {
	if len(s.assigned) == 0 {
		return false
	}
	pairs := make([]string, 0, 2*len(s.assigned))
	for _, n := range s.assigned {
		pairs = append(pairs, macros.Wire(n), "")
	}
	_, ok := macros.Lookup(s.b.cfg.Macros.Apply(st, pairs), name)
	return ok
}

// starved logs, once per macro, that the filter asked for a macro nobody
// provides.
func (b *Backend) starved(front string, st macros.Stage, name string) {
	key := st.String() + " " + macros.Normalize(name)
	if _, dup := b.warned.LoadOrStore(key, true); dup || b.cfg.Log == nil {
		return
	}
	b.cfg.Log.Warn("backend asked for a macro the MTA did not send and pmult cannot derive",
		"backend", b.cfg.Name, "macro", macros.Wire(name), "stage", st.String(), "provide_with", MTASetting(front, st, name))
}

// MTASetting names the MTA-side settings that would provide macro name at
// stage st, for the front end's dialect, or a [macros] table.
func MTASetting(front string, st macros.Stage, name string) string {
	w := macros.Wire(name)
	tab := fmt.Sprintf("or a [macros] default/set %q", st.String()+":"+w)
	if front == "meta1" {
		return fmt.Sprintf("define_macros %s in [meta1] (if MeTA1 has it), %s", st, tab)
	}
	return fmt.Sprintf("%s in main.cf (Postfix) or %s in sendmail.mc (Sendmail), %s",
		macros.PostfixParam[st]+" += "+w, macros.SendmailOption[st], tab)
}

// ProtocolVersion is the milter protocol version the filter negotiated
// (for pmult check --live).
func (s *session) ProtocolVersion() uint32 { return s.version }
