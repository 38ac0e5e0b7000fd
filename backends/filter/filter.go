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
// A verdict rule on the recipients is tried at every RCPT on that
// recipient alone, and answers for it (as check_recipient_access); at
// DATA it is decided on the recipients the filter let through. No rule is
// tried at a header or a body chunk: a header rule answers at EOH (every
// header known), a size or body rule at EOM; the MTA rejects the message
// all the same, as with header_checks(5). Edit rules apply at end of
// message, every one whose match holds, in order.
//
// The filter's Caps declare NoEvent for the stages no rule reads and
// NoReply for those where no rule can answer (see narrow), so the MTA is
// not asked for events nobody wants.
//
// Set_macro rules apply at the stage their match is decided true
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
	meta    []ruleMeta // by rule: what New worked out once
	caps    pmult.Caps
	log     *slog.Logger
	bodyMax int // the most body bytes a rule reads
}

// ruleMeta is what the session asks of a rule at every event, computed once.
type ruleMeta struct {
	verdict    pmult.Verdict
	isVerdict  bool
	perRcpt    bool
	perMessage bool // decided again for every message
}

// New returns a filter of rules.
func New(name string, rules []Rule, log *slog.Logger) *Filter {
	f := &Filter{name: name, rules: rules, log: log, meta: make([]ruleMeta, len(rules))}
	for i := range rules {
		r := &rules[i]
		v, ok := r.verdict()
		f.meta[i] = ruleMeta{verdict: v, isVerdict: ok, perRcpt: ok && perRcpt(r),
			perMessage: r.Body != nil || (r.Match != nil && r.Match.Stage() > pmult.KindHelo)}
		if r.Body != nil {
			f.bodyMax = max(f.bodyMax, r.BodyMax)
		}
		if !ok && !r.setsMacros() {
			f.caps.Actions |= r.Edit.Kind.Need()
		}
	}
	f.caps.NoEvent, f.caps.NoReply = narrow(rules)
	return f
}

// upTo is the events from CONNECT to k (EOM excluded: always sent).
func upTo(k pmult.Kind) pmult.KindSet {
	var s pmult.KindSet
	for x := pmult.KindConnect; x <= k && x < pmult.KindEOM; x++ {
		s = s.With(x)
	}
	return s
}

// narrow returns the events none of the rules needs (NoEvent) and those
// the filter never answers with anything but continue (NoReply), so the
// MTA is not asked for events, or made to wait for answers, nobody wants.
// A rule needs the events up to the stage of its match (its facts), a
// verdict rule answers at those stages (a rule without match at CONNECT),
// body_regex needs the body, delete_header the headers, and a ${macro}
// in a text or value the envelope (where the macros come).
func narrow(rules []Rule) (noEvent, noReply pmult.KindSet) {
	need := pmult.KindSet(0)
	reply := pmult.KindSet(0)
	for _, r := range rules {
		st := pmult.KindNone // the listener only, or no match: no facts
		if r.Match != nil {
			st = r.Match.Stage()
		}
		_, isVerdict := r.verdict()
		if isVerdict || r.setsMacros() {
			st = max(st, pmult.KindConnect) // decided at CONNECT at the earliest
			// Answered at the envelope stages, EOH or EOM: never at a
			// header or a body chunk (see Handle).
			reply |= upTo(st) &^ pmult.Kinds(pmult.KindHeader, pmult.KindBody)
		}
		need |= upTo(st)
		if r.Body != nil {
			need = need.With(pmult.KindBody)
		}
		if r.Action == "delete_header" {
			need = need.With(pmult.KindHeader)
		}
		if strings.Contains(r.Reply, "${") || strings.Contains(r.Edit.Value, "${") {
			need |= upTo(pmult.KindData)
		}
		for _, a := range r.Set {
			if strings.Contains(a.Value, "${") {
				need |= upTo(pmult.KindData)
			}
		}
	}
	for _, k := range []pmult.Kind{pmult.KindConnect, pmult.KindHelo, pmult.KindMail, pmult.KindRcpt, pmult.KindData,
		pmult.KindHeader, pmult.KindEOH, pmult.KindBody, pmult.KindUnknown} {
		if !need.Has(k) {
			noEvent = noEvent.With(k)
		}
		if !reply.Has(k) {
			noReply = noReply.With(k)
		}
	}
	return noEvent, noReply
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
		for i := range s.f.meta {
			if s.f.meta[i].perMessage {
				s.decided[i] = false
			}
		}
	case pmult.KindAbort, pmult.KindQuit, pmult.KindQuitNC, pmult.KindUnknown:
		return pmult.Reply{}, nil
	case pmult.KindHeader:
		// Header rules are decided at EOH, with every header known;
		// size rules at EOM: the message is rejected all the same (as
		// header_checks, at the end of DATA), and no rule is tried at
		// every header and body chunk.
		return pmult.Reply{}, nil
	}
	if ev.Kind == pmult.KindBody {
		return pmult.Reply{}, nil
	}
	if ev.Kind == pmult.KindRcpt {
		if r, ok := s.rcpt(ev); ok {
			return r, nil
		}
	}
	var set []pmult.Assignment
	for i := range s.f.rules {
		r := &s.f.rules[i]
		if !r.setsMacros() || s.decided[i] || !s.decide(i, ev.Kind) {
			continue
		}
		for _, a := range r.Set {
			a.Value = s.expand(a.Value)
			set = append(set, a)
		}
	}
	for i := range s.f.rules {
		m := &s.f.meta[i]
		if !m.isVerdict || s.decided[i] || (ev.Kind == pmult.KindRcpt && m.perRcpt) {
			continue
		}
		if s.decide(i, ev.Kind) {
			return pmult.Reply{Verdict: m.verdict, Text: s.expand(s.f.rules[i].Reply), Macros: set}, nil
		}
	}
	if ev.Kind != pmult.KindEOM {
		return pmult.Reply{Macros: set}, nil
	}
	edits := []pmult.Edit(nil)
	for i := range s.f.rules {
		if s.f.meta[i].isVerdict || s.f.rules[i].setsMacros() {
			continue
		}
		r := &s.f.rules[i]
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

// perRcpt reports whether r is decided per recipient at RCPT: a verdict
// rule whose match reads the recipients (Stage DATA), as
// check_recipient_access in Postfix's access(5).
func perRcpt(r *Rule) bool {
	return r.Match != nil && r.Match.Stage() == pmult.KindData && r.Body == nil
}

// rcpt tries the per-recipient rules on the recipient of this RCPT alone
// (in order, the first that matches wins). Such a rule is not decided at
// RCPT: it is tried again at the next one, and at DATA on the recipients
// the filter let through (one it rejected or tempfailed is not among its
// facts: the MTA drops it).
func (s *session) rcpt(ev *pmult.Event) (pmult.Reply, bool) {
	n := len(s.facts.Rcpts)
	if n == 0 || ev.RejectedRcpt {
		return pmult.Reply{}, false // one the MTA rejected: not in the facts
	}
	all := s.facts.Rcpts
	s.facts.Rcpts = all[n-1:]
	defer func() { s.facts.Rcpts = all }()
	for i := range s.f.rules {
		m := &s.f.meta[i]
		if !m.perRcpt || s.decided[i] {
			continue
		}
		r := &s.f.rules[i]
		v := m.verdict
		if r.Match.Eval(&s.facts) != pmult.Yes {
			continue
		}
		s.f.log.Debug("rule matched", "backend", s.f.name, "rule", i, "action", r.Action, "stage", "rcpt", "rcpt", all[n-1])
		if v == pmult.Reject || v == pmult.Tempfail {
			all = all[:n-1]
		}
		return pmult.Reply{Verdict: v, Text: s.expand(r.Reply)}, true
	}
	return pmult.Reply{}, false
}

// decide evaluates rule i at stage k: once its value is known the rule
// is marked decided; decide reports whether it matched (and logs it).
func (s *session) decide(i int, k pmult.Kind) bool {
	r := &s.f.rules[i]
	t := s.eval(r, k)
	if t == pmult.Unknown {
		return false
	}
	s.decided[i] = true
	if t != pmult.Yes {
		return false
	}
	s.f.log.Debug("rule matched", "backend", s.f.name, "rule", i, "action", r.Action, "stage", k.String())
	return true
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
