// Package filter is the rule filter (type = "filter"): an in-process
// backend with a synchronous session that tries ordered rules.
//
//	[[backend]]
//	name = "rules"
//	type = "filter"
//	[[backend.rule]]
//	match = { client_file = "/etc/pmult/blocked-nets" }   # a condition table (see internal/cond)
//	action = "reject"                                    # see below
//	code = "554"                                         # reject: 550, tempfail: 451 by default
//	xcode = "5.7.1"                                      # default 5.7.1 / 4.7.1
//	text = "blocked: ${client_addr}"                     # lines split at \n; ${macro} expanded
//
// body_regex (with body_max, default 64 KiB) must also match the first
// body_max bytes of the body: such a rule is decided at end of message.
//
// Actions: continue, accept, reject, tempfail, discard (verdicts), and
// quarantine (reason), add_header, insert_header (name, value, index),
// change_header (name, value, index), delete_header (name; value_regex:
// every instance whose value matches, else every instance),
// change_sender (addr), add_rcpt (addr), delete_rcpt (addr) (edits,
// made at end of message), and set_macro: it sets macros for the backends
// after the filter in the chain (pmult/assign.go), one (macro, value) or
// several (macros = { "{x_reputation}" = "bad ${client_addr}" }), values
// ${macro}-expanded; override = true lets them replace a value the MTA
// sent; from = "mail" (a stage) shows them from that stage on.
//
//	[[backend.rule]]
//	match = { client_file = "/etc/pmult/poor-reputation" }
//	action = "set_macro"
//	macro = "{x_reputation}"
//	value = "bad ${client_addr}"
//
// Verdict rules are tried at every stage in order, among those whose
// match is decided there (a match is decided at the first stage its
// inputs are known, as a backend condition): the first one that matches
// wins, like Postfix access(5); a rule without match matches at CONNECT.
// Edit rules apply at end of message, every one whose match holds, in
// order. Set_macro rules apply at the stage their match is decided true
// (every one, in order, before the verdict rules of that stage: they are
// not verdicts), once per message, or per connection for a match decided
// at CONNECT or HELO (or no match): a macro set at CONNECT or HELO lasts
// for the connection, one set in a message until it ends.
package filter

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/mailmux/mailmux/pmult"
)

// Rule is one compiled rule.
type Rule struct {
	Match  pmult.Condition // nil: always
	Action string
	Reply  string // verdicts: the reply template
	Edit   pmult.Edit
	Value  *regexp.Regexp // delete_header: the values to delete; nil: all
	// Body, when set, must match the first BodyMax bytes of the body
	// too (decided at end of message).
	Body    *regexp.Regexp
	BodyMax int
	// Set: set_macro's assignments (values are templates).
	Set []pmult.Assignment
}

func (r *Rule) setsMacros() bool { return r.Action == "set_macro" }

func (r *Rule) verdict() (pmult.Verdict, bool) {
	switch r.Action {
	case "continue":
		return pmult.Continue, true
	case "accept":
		return pmult.Accept, true
	case "reject":
		return pmult.Reject, true
	case "tempfail":
		return pmult.Tempfail, true
	case "discard":
		return pmult.Discard, true
	}
	return 0, false
}

// Filter is the backend.
type Filter struct {
	name    string
	rules   []Rule
	caps    pmult.Caps
	log     *slog.Logger
	bodyMax int // the most body bytes a rule reads
}

// New returns a filter of rules.
func New(name string, rules []Rule, log *slog.Logger) *Filter {
	f := &Filter{name: name, rules: rules, log: log}
	for _, r := range rules {
		if r.Body != nil {
			f.bodyMax = max(f.bodyMax, r.BodyMax)
		}
		if _, ok := r.verdict(); !ok && !r.setsMacros() {
			f.caps.Actions |= r.Edit.Kind.Need()
		}
	}
	return f
}

// Name is the backend's name.
func (f *Filter) Name() string { return f.name }

// SetsMacros implements pmult.MacroSetter: the macros of its set_macro
// rules.
func (f *Filter) SetsMacros() []string {
	var out []string
	for _, r := range f.rules {
		for _, a := range r.Set {
			out = append(out, a.Name)
		}
	}
	return out
}

// Open starts a session: no connection, nothing to fail.
func (f *Filter) Open(ctx context.Context, info pmult.OpenInfo) (pmult.BackendSession, error) {
	s := &session{f: f, decided: make([]bool, len(f.rules)), lead: info.Offer.LeadingSpace}
	s.facts.Listener = info.Offer.Listener
	return s, nil
}

type session struct {
	f       *Filter
	facts   pmult.Facts
	decided []bool // rule decided in this message (or connection)
	lead    bool
	body    []byte // the first bodyMax bytes of the body
	// derived: the macros pmult derived (MacroSet.Synth: {client_addr}
	// and the like, which Postfix does not send by default), for ${...}
	// expansion when the MTA sent no value.
	derived map[string]string
}

func (s *session) Caps() pmult.Caps { return s.f.caps }
func (s *session) Close() error     { return nil }

func (s *session) Handle(ctx context.Context, ev *pmult.Event) (pmult.Reply, error) {
	s.facts.Note(ev)
	s.noteDerived(ev)
	switch ev.Kind {
	case pmult.KindConnect:
		clear(s.decided)
	case pmult.KindBody:
		if n := s.f.bodyMax - len(s.body); n > 0 {
			s.body = append(s.body, ev.Chunk[:min(n, len(ev.Chunk))]...)
		}
	case pmult.KindMail:
		s.body = s.body[:0]
		for i, r := range s.f.rules {
			if r.Body != nil || (r.Match != nil && r.Match.Stage() > pmult.KindHelo) {
				s.decided[i] = false
			}
		}
	case pmult.KindAbort, pmult.KindQuit, pmult.KindQuitNC, pmult.KindUnknown:
		return pmult.Reply{}, nil
	}
	var set []pmult.Assignment
	for i := range s.f.rules {
		r := &s.f.rules[i]
		if !r.setsMacros() || s.decided[i] {
			continue
		}
		t := s.eval(r, ev.Kind)
		if t == pmult.Unknown {
			continue
		}
		s.decided[i] = true
		if t == pmult.Yes {
			s.f.log.Debug("rule matched", "backend", s.f.name, "rule", i, "action", r.Action, "stage", ev.Kind.String())
			for _, a := range r.Set {
				a.Value = s.expand(a.Value)
				set = append(set, a)
			}
		}
	}
	for i := range s.f.rules {
		r := &s.f.rules[i]
		v, isVerdict := r.verdict()
		if !isVerdict || s.decided[i] {
			continue
		}
		t := s.eval(r, ev.Kind)
		if t == pmult.Unknown {
			continue
		}
		s.decided[i] = true
		if t == pmult.Yes {
			s.f.log.Debug("rule matched", "backend", s.f.name, "rule", i, "action", r.Action, "stage", ev.Kind.String())
			return pmult.Reply{Verdict: v, Text: s.expand(r.Reply), Macros: set}, nil
		}
	}
	if ev.Kind != pmult.KindEOM {
		return pmult.Reply{Macros: set}, nil
	}
	edits := []pmult.Edit(nil)
	for i := range s.f.rules {
		r := &s.f.rules[i]
		if _, isVerdict := r.verdict(); isVerdict || r.setsMacros() {
			continue
		}
		if s.eval(r, pmult.KindEOM) != pmult.Yes {
			continue
		}
		if r.Action == "delete_header" {
			edits = append(edits, s.deletes(r)...)
			continue
		}
		e := r.Edit
		if e.Kind == pmult.EditQuarantine || e.Kind == pmult.EditAddHeader || e.Kind == pmult.EditInsertHeader || e.Kind == pmult.EditChangeHeader {
			e.Value = s.expand(e.Value)
		}
		edits = append(edits, e)
	}
	return pmult.Reply{Edits: edits, Macros: set}, nil
}

// eval is the value of r's match (and body_regex) at stage k.
func (s *session) eval(r *Rule, k pmult.Kind) pmult.Tri {
	t := pmult.Yes
	if r.Match != nil {
		t = r.Match.Eval(&s.facts)
	}
	if r.Body == nil || t == pmult.No {
		return t
	}
	if k != pmult.KindEOM {
		return pmult.Unknown
	}
	if t == pmult.Yes && !r.Body.Match(s.body[:min(len(s.body), r.BodyMax)]) {
		return pmult.No
	}
	return t
}

// deletes deletes the instances of r's header whose value matches, last
// first (so the earlier occurrence numbers stay right).
func (s *session) deletes(r *Rule) []pmult.Edit {
	var out []pmult.Edit
	n := 0
	for _, h := range s.facts.Headers {
		if !strings.EqualFold(h.Name, r.Edit.Name) {
			continue
		}
		n++
		v := h.Value
		if s.lead {
			v = strings.TrimPrefix(v, " ")
		}
		if r.Value == nil || r.Value.MatchString(v) {
			out = append(out, pmult.Edit{Kind: pmult.EditChangeHeader, Name: h.Name, Index: n})
		}
	}
	slices.Reverse(out)
	return out
}

// noteDerived keeps the derived macros of ev's sets.
func (s *session) noteDerived(ev *pmult.Event) {
	if ev.Kind == pmult.KindConnect {
		clear(s.derived)
	}
	for _, set := range ev.Macros {
		for i := 0; i+1 < len(set.Synth); i += 2 {
			if s.derived == nil {
				s.derived = make(map[string]string)
			}
			s.derived[strings.Trim(set.Synth[i], "{}")] = set.Synth[i+1]
		}
	}
}

// expand replaces ${name} with the macro's value: the MTA's (or an
// earlier backend's), else the one pmult derived, else "".
func (s *session) expand(t string) string {
	if !strings.Contains(t, "$") {
		return t
	}
	return os.Expand(t, func(name string) string {
		if v, ok := s.facts.Macro(name); ok {
			return v
		}
		return s.derived[strings.Trim(name, "{}")]
	})
}

// replyText builds the reply: code, extended code, lines.
func replyText(code, xcode string, lines []string) string {
	var b strings.Builder
	for i, l := range lines {
		sep := " "
		if i < len(lines)-1 {
			sep = "-"
		}
		if i > 0 {
			b.WriteString("\r\n")
		}
		fmt.Fprintf(&b, "%s%s%s %s", code, sep, xcode, l)
	}
	return b.String()
}
