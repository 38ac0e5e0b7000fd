// assign.go: macros a backend sets for the backends after it in the
// chain (issues 11 and 13). A backend's Reply carries them (Reply.Macros,
// name, value, the first stage that shows them, whether they may override
// the MTA's value); the engine keeps them for the session and puts them in
// the macro set of each later event's stage, in the copy of the event it
// hands to each backend after the setter in chain order, as if the MTA had
// sent them. The seam is a Reply field rather than an optional interface:
// a backend that computes a macro does it while answering an event, and
// pmult.Func backends get it for free; BackendSession stays as it was.
//
// Who sees an assignment, and from when: every backend after the setter
// in chain order (never the setter, never one before it), at the events
// the engine delivers to it after it has the setter's answer. Envelope
// events (and the live content phase) go to all their backends at once,
// so an assignment made at MAIL shows from the next event on (RCPT) to
// every backend after the setter, not at MAIL itself. At end of message
// the backends that get the content by replay (serial mode: editors after
// the first, read-only backends after an editor) run after the live ones
// and one after the other in chain order: they see what the live backends
// and the replayed ones before them assigned at EOM, in their replayed
// EOH and EOM. A backend that waits at an envelope stage (Caps.WaitEarlier,
// or Policy.WaitEarlier: the wait_earlier key) gets that event once the
// other backends have answered it, and its condition is asked then too,
// so both see what those before it set at the same event (the callout
// backend with skip_macro waits at MAIL and RCPT). Assignment.From delays
// an assignment further (to that stage).
//
// The macros show at the events that carry a macro stage (CONNECT, HELO,
// MAIL, RCPT, DATA, EOH, EOM), in that stage's set: a milter backend
// sends them in the macro packet before the command, to a filter that
// asked for the name at that stage (SMFIR_SETSYMLIST) or, if it asked for
// nothing there, with everything the MTA sent; through its own [macros]
// table, as the MTA's. Conditions (cond.go) of the backends after the
// setter see them at every stage (Facts.Macro).
//
// Scope: an assignment made at CONNECT or HELO (or at UNKNOWN outside a
// message) lasts for the connection (until the next CONNECT or QUIT_NC),
// one made in a message until the message ends (EOM answered, ABORT, the
// next MAIL), as the MTA's own macros do. The same name set again (by the
// same or another backend) shows its latest value to the backends after
// both setters; a backend between them sees the first one's.
//
// The MTA's value wins: an assignment of a name the MTA sent in its scope
// so far (connection stages and the message's, after the engine's [macros]
// tables) is not shown, unless Assignment.Override (then its value takes
// the place of the MTA's in the stage's set; a name the MTA sent at an
// earlier stage keeps that value there, but libmilter's smfi_getsymval
// searches the later stages first, so the override is what a filter
// reads). An assignment does
// take the place of a value pmult would derive (MacroSet.Synth: {client_addr}
// and the like, table defaults). A backend in evaluation mode assigns
// nothing (kept as a "would_set_macro" policy). Each assignment is kept in
// the decision record (Record.Macros; "set_macro" policy on the decision
// line).
//
// A backend that may set macros says which (MacroSetter: the rule
// filter's set_macro names, the callout backend's tag macros); each
// backend after it learns them at open (OpenInfo.Assigned), so a milter
// asking for one the MTA does not send is not told to change the MTA.
//
// Conditions decide at their stage: a `macro` input on a name pmult does
// not know decides at MAIL, so a macro set at MAIL is seen by the
// condition of a later backend only if that backend waits at MAIL (or if
// the macro is set at CONNECT or HELO).
//
// Tunables and defaults: Policy.WaitEarlier (wait_earlier), none by
// default. A session with no assignment pays a length check per event,
// and one loop over the targets per envelope event.

package pmult

import (
	"slices"
	"strings"

	"github.com/mailmux/mailmux/macros"
)

// assignment is one macro assignment kept by the session.
type assignment struct {
	pos      int    // the setter's place in the chain
	name     string // normalised (no braces)
	wire     string // as MTAs send it (macros.Wire)
	value    string
	from     Kind
	override bool
	conn     bool // connection scope (else the message's)
}

// noteSent keeps the MTA's macro pairs of ev by stage (after the tables),
// to tell whether the MTA sent a name in scope.
func (s *Session) noteSent(ev *Event) {
	switch ev.Kind {
	case KindConnect:
		clear(s.sent[:])
	case KindMail:
		for k := KindMail; k <= KindEOM; k++ {
			s.sent[k] = nil
		}
	}
	for _, set := range ev.Macros {
		if set.For < numKinds && len(set.Pairs) > 0 {
			s.sent[set.For] = set.Pairs
		}
	}
}

// mtaSent reports whether the MTA sent name (normalised) in scope so far.
func (s *Session) mtaSent(name string) bool {
	for _, pairs := range s.sent {
		if _, ok := macros.Lookup(pairs, name); ok {
			return true
		}
	}
	return false
}

// validMacroName: a name a milter could ask for.
func validMacroName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	return !strings.ContainsAny(n, "{} \t\r\n\x00")
}

// assign keeps b's assignments made in its answer to an event of kind k.
func (s *Session) assign(b *bstate, k Kind, list []Assignment) {
	conn := k == KindConnect || k == KindHelo || (k == KindUnknown && !s.inMessage)
	for _, a := range list {
		n := macros.Normalize(a.Name)
		if !validMacroName(n) || strings.IndexByte(a.Value, 0) >= 0 {
			s.log.Warn("backend set a macro with a bad name or a NUL in its value: ignored", "backend", b.name,
				"stage", k.String(), "macro", a.Name)
			continue
		}
		from := a.From
		if from > KindEOM {
			from = KindNone
		}
		wire := macros.Wire(n)
		if b.slot.Policy.Evaluate {
			s.recPolicy("would_set_macro", b, k, wire)
			s.log.Info("evaluation: backend would have set a macro", "backend", b.name, "stage", k.String(),
				"macro", wire, "value", a.Value)
			continue
		}
		s.asg = deleteAssignment(s.asg, b.pos, n)
		s.asg = append(s.asg, assignment{pos: b.pos, name: n, wire: wire, value: a.Value, from: from,
			override: a.Override, conn: conn})
		s.recMacro(b, k, wire, a.Value, a.Override)
		s.log.Debug("backend set a macro", "backend", b.name, "stage", k.String(), "macro", wire,
			"value", a.Value, "override", a.Override)
	}
}

func deleteAssignment(l []assignment, pos int, name string) []assignment {
	for i := range l {
		if l[i].pos == pos && l[i].name == name {
			return append(l[:i], l[i+1:]...)
		}
	}
	return l
}

// endAssignments forgets the message's assignments (conn: the
// connection's too).
func (s *Session) endAssignments(conn bool) {
	if len(s.asg) == 0 {
		return
	}
	out := s.asg[:0]
	for _, a := range s.asg {
		if a.conn && !conn {
			out = append(out, a)
		}
	}
	clear(s.asg[len(out):])
	s.asg = out
}

// active reports whether a shows at events of kind k.
func (a *assignment) active(k Kind) bool {
	if a.from == KindNone {
		return true
	}
	if k == KindUnknown {
		return a.from <= KindHelo
	}
	return k >= a.from
}

// visible returns the name, value pairs (wire names) b sees at events of
// kind k: the latest assignment of each name by a backend before it, less
// those the MTA's value hides. nil: none. The list is the session's
// scratch, valid until the next call: callers copy what they keep.
func (s *Session) visible(b *bstate, k Kind) []string {
	out := s.vis[:0]
	for i := range s.asg {
		a := &s.asg[i]
		if a.pos >= b.pos || !a.active(k) || (!a.override && s.mtaSent(a.name)) {
			continue
		}
		replaced := false
		for j := 0; j+1 < len(out); j += 2 {
			if out[j] == a.wire {
				out[j+1], replaced = a.value, true
			}
		}
		if !replaced {
			out = append(out, a.wire, a.value)
		}
	}
	s.vis = out
	if len(out) == 0 {
		return nil
	}
	return out
}

// view returns the event b gets: ev itself, or, when earlier backends
// assigned macros b sees, a copy whose stage set holds them.
func (s *Session) view(b *bstate, ev *Event) *Event {
	if len(s.asg) == 0 {
		return ev
	}
	if _, ok := macroStage(ev.Kind); !ok {
		return ev
	}
	vis := s.visible(b, ev.Kind)
	if len(vis) == 0 {
		return ev
	}
	c := *ev
	c.Macros = make([]MacroSet, 0, len(ev.Macros)+1)
	found := false
	for _, set := range ev.Macros {
		if set.For == ev.Kind && !found {
			found = true
			set = withAssigned(set, vis)
		}
		c.Macros = append(c.Macros, set)
	}
	if !found {
		c.Macros = append(c.Macros, withAssigned(MacroSet{For: ev.Kind}, vis))
	}
	return &c
}

// withAssigned returns set with the visible pairs in Pairs (replacing the
// value of a name already there: an override) and out of Synth.
func withAssigned(set MacroSet, vis []string) MacroSet {
	pairs := make([]string, len(set.Pairs), len(set.Pairs)+len(vis))
	copy(pairs, set.Pairs)
	var synth []string
	for i := 0; i+1 < len(set.Synth); i += 2 {
		if _, ok := macros.Lookup(vis, set.Synth[i]); !ok {
			synth = append(synth, set.Synth[i], set.Synth[i+1])
		}
	}
	for i := 0; i+1 < len(vis); i += 2 {
		n := macros.Normalize(vis[i])
		replaced := false
		for j := 0; j+1 < len(pairs); j += 2 {
			if macros.Normalize(pairs[j]) == n {
				pairs[j+1], replaced = vis[i+1], true
			}
		}
		if !replaced {
			pairs = append(pairs, vis[i], vis[i+1])
		}
	}
	set.Pairs, set.Synth = pairs, synth
	return set
}

// assignable returns the macros (normalised) the backends before slot
// pos may set, from their MacroSetter.
func (e *Engine) assignable(pos int) []string {
	e.assignOnce.Do(func() {
		e.assignBy = make([][]string, len(e.Slots))
		var acc []string
		for i, sl := range e.Slots {
			e.assignBy[i] = acc
			if ms, ok := sl.Backend.(MacroSetter); ok {
				next := slices.Clone(acc)
				for _, n := range ms.SetsMacros() {
					if n = macros.Normalize(n); !slices.Contains(next, n) {
						next = append(next, n)
					}
				}
				acc = next
			}
		}
	})
	if pos < len(e.assignBy) {
		return e.assignBy[pos]
	}
	return nil
}

// waits reports whether b gets envelope events of kind k only once the
// others have answered them (Caps.WaitEarlier, Policy.WaitEarlier).
func (b *bstate) waits(k Kind) bool {
	return k.Envelope() && (b.caps.WaitEarlier | b.slot.Policy.WaitEarlier).Has(k)
}

// waves splits an envelope event's targets: those that wait for the
// others to answer first (to see the macros the backends before them set
// at this event), after the rest. With none waiting, all go in the first.
func waves(targets []*bstate, k Kind) (first, later []*bstate) {
	n := 0
	for _, b := range targets {
		if b.waits(k) {
			n++
		}
	}
	if n == 0 {
		return targets, nil
	}
	first = make([]*bstate, 0, len(targets)-n)
	later = make([]*bstate, 0, n)
	for _, b := range targets {
		if b.waits(k) {
			later = append(later, b)
		} else {
			first = append(first, b)
		}
	}
	return first, later
}

// stillIn drops the backends of the later wave that left at the
// condition check made after the first wave.
func stillIn(later []*bstate, k Kind) []*bstate {
	msg := k != KindConnect && k != KindHelo && k != KindUnknown
	out := later[:0]
	for _, b := range later {
		if !b.dead && !b.doneConn && !(msg && b.doneMsg) {
			out = append(out, b)
		}
	}
	return out
}

// noteReply takes what b's answer carries besides its verdict: macro
// assignments and notes.
func (s *Session) noteReply(b *bstate, k Kind, r *Reply) {
	if len(r.Macros) > 0 {
		s.assign(b, k, r.Macros)
	}
	for _, n := range r.Notes {
		s.recPolicy(n.What, b, k, n.Action)
	}
}
