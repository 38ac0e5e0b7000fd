package filter_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

const setRules = `
[[rule]]
match = { client = "203.0.113.0/24" }
action = "set_macro"
macro = "{x_reputation}"
value = "bad ${client_addr}"
[[rule]]
match = { sender_domain = "example.org" }
action = "set_macro"
macros = { "{spf_result}" = "pass", "x_sender" = "${mail_addr}" }
[[rule]]
match = { client = "203.0.113.0/24" }
action = "set_macro"
macro = "{daemon_name}"
value = "tagged"
override = true
from = "rcpt"
[[rule]]
match = { client = "198.51.100.0/24" }
action = "reject"
`

// The filter sets macros; a backend after it sees them from the next
// event on, one before it never; several per rule; override; from.
func TestSetMacro(t *testing.T) {
	s, errs := parse(t, setRules)
	if errs != nil {
		t.Fatal(errs)
	}
	before := pmulttest.New("before", pmulttest.Reader)
	after := pmulttest.New("after", pmulttest.Reader)
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: before}, {Backend: s.NewBackend("rules", 0, nil)}, {Backend: after}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Do(&pmult.Event{Kind: pmult.KindConnect, Family: '4', Address: "203.0.113.9", Hostname: "poor.example",
		Macros: []pmult.MacroSet{{For: pmult.KindConnect, Pairs: []string{"{client_addr}", "203.0.113.9", "{daemon_name}", "smtpd"}}}})
	h.Helo()
	h.Do(&pmult.Event{Kind: pmult.KindMail, Args: []string{"<a@example.org>"},
		Macros: []pmult.MacroSet{{For: pmult.KindMail, Pairs: []string{"{mail_addr}", "a@example.org"}}}})
	h.Rcpt("b@example.net")
	h.Data()
	h.Message(nil, "")
	check := func(f *pmulttest.Backend, k pmult.Kind, name string, want ...string) {
		t.Helper()
		if got := f.MacroValues(k, name); !slices.Equal(got, want) {
			t.Errorf("%s at %s: %s = %q, want %q", f.Name(), k, name, got, want)
		}
	}
	check(after, pmult.KindConnect, "x_reputation", "-")
	check(after, pmult.KindHelo, "x_reputation", "bad 203.0.113.9")
	check(after, pmult.KindMail, "x_reputation", "bad 203.0.113.9")
	check(after, pmult.KindEOM, "x_reputation", "bad 203.0.113.9")
	check(after, pmult.KindMail, "spf_result", "-")
	check(after, pmult.KindRcpt, "spf_result", "pass")
	check(after, pmult.KindRcpt, "x_sender", "a@example.org")
	check(after, pmult.KindMail, "daemon_name", "-") // from = "rcpt"
	check(after, pmult.KindRcpt, "daemon_name", "tagged")
	for _, k := range []pmult.Kind{pmult.KindHelo, pmult.KindMail, pmult.KindRcpt, pmult.KindEOM} {
		check(before, k, "x_reputation", "-")
		check(before, k, "spf_result", "-")
	}
	// Another client: no macros; the reject rule still works.
	h = pmulttest.Open(t, e, pmulttest.AllOffer)
	if r := h.Do(&pmult.Event{Kind: pmult.KindConnect, Family: '4', Address: "198.51.100.7", Hostname: "x"}); r.Verdict != pmult.Reject {
		t.Errorf("reject rule: %v", r.Verdict)
	}
}

// A later filter's condition and ${macro} expansion read what an earlier
// filter set.
func TestSetMacroReadByLaterFilter(t *testing.T) {
	first, errs := parse(t, `
[[rule]]
action = "set_macro"
macro = "{x_reputation}"
value = "bad"
`)
	if errs != nil {
		t.Fatal(errs)
	}
	second, errs := parse(t, `
[[rule]]
match = { macro = { "{x_reputation}" = "bad" } }
action = "reject"
text = "reputation ${x_reputation}"
`)
	if errs != nil {
		t.Fatal(errs)
	}
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: first.NewBackend("tagger", 0, nil)}, {Backend: second.NewBackend("judge", 0, nil)}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	r := h.Mail()
	if r.Verdict != pmult.Reject || !strings.Contains(r.Text, "reputation bad") {
		t.Errorf("mail: %v %q, want the judge's reject with the macro expanded", r.Verdict, r.Text)
	}
	// In the other order the judge never sees it.
	e = &pmult.Engine{Slots: []pmult.Slot{{Backend: second.NewBackend("judge", 0, nil)}, {Backend: first.NewBackend("tagger", 0, nil)}}}
	h = pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	if r := h.Mail(); r.Verdict.Objects() {
		t.Errorf("judge before the tagger: %v %q, want no objection", r.Verdict, r.Text)
	}
}

func TestSetMacroConfigErrors(t *testing.T) {
	_, errs := parse(t, `
[[rule]]
action = "set_macro"
macro = "{bad name}"
value = "x"
[[rule]]
action = "set_macro"
value = "x"
[[rule]]
action = "set_macro"
macros = { "{a}" = 1 }
from = "later"
[[rule]]
action = "reject"
macro = "{x}"
[[rule]]
action = "set_macro"
`)
	got := ""
	for _, e := range errs {
		got += e.Error() + "\n"
	}
	for _, want := range []string{"rule[0].macro", "rule[1].macro", "rule[2].macros.{a}", "rule[2].from",
		"rule[3].macro: only for action set_macro", "rule[4].macro"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}

// ${client_addr}, which Postfix does not send by default, expands to the
// value pmult derived.
func TestSetMacroExpandsDerived(t *testing.T) {
	s, errs := parse(t, setRules)
	if errs != nil {
		t.Fatal(errs)
	}
	after := pmulttest.New("after", pmulttest.Reader)
	e := &pmult.Engine{Macros: &pmult.MacroTables{}, Slots: []pmult.Slot{{Backend: s.NewBackend("rules", 0, nil)}, {Backend: after}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Do(&pmult.Event{Kind: pmult.KindConnect, Family: '4', Address: "203.0.113.9", Hostname: "poor.example"})
	h.Helo()
	if got := after.MacroValues(pmult.KindHelo, "x_reputation"); !slices.Equal(got, []string{"bad 203.0.113.9"}) {
		t.Errorf("x_reputation = %q, want the derived client address", got)
	}
}

// A macro set in one message is gone in the next one, for a filter after
// the setter as for the engine (its Facts forget a message's macros at
// the next MAIL).
func TestSetMacroMessageScopeInLaterFilter(t *testing.T) {
	judge, errs := parse(t, `
[[rule]]
match = { macro = { "{spf_result}" = "pass" } }
action = "reject"
`)
	if errs != nil {
		t.Fatal(errs)
	}
	setter := pmulttest.New("setter", pmulttest.Reader)
	setter.Seq[pmult.KindMail] = []pmulttest.Step{{Macros: []pmult.Assignment{{Name: "spf_result", Value: "pass"}}}}
	e := &pmult.Engine{Slots: []pmult.Slot{{Backend: setter},
		{Backend: judge.NewBackend("judge", 0, nil), Policy: pmult.Policy{WaitEarlier: pmult.Kinds(pmult.KindMail)}}}}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	if r := h.Mail(); r.Verdict != pmult.Reject {
		t.Fatalf("first message: MAIL = %+v, want the judge's reject (it waits for the setter at MAIL)", r)
	}
	h.Abort()
	if r := h.Mail(); r.Verdict.Objects() {
		t.Errorf("second message: MAIL = %+v: the first message's macro leaked", r)
	}
}
