// seam_macros_test.go: one backend sets macros for the backends after it
// (issues 11 and 13), through real Postfix: the rule filter's set_macro
// read by a real mailfromd (MFL ${x_reputation}), a real pymilter
// (libmilter smfi_getsymval) and a later backend's condition; the
// callout backend not probing a sender the filter vouched for at MAIL
// ({spf_result} = pass), and its tag verdict's {sender_verify} read by
// mailfromd after it.

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// reputationMFL adds the value of {x_reputation} (set by the filter
// before it) as a header, when it is defined; the pragma makes mailfromd
// ask for the macro at end of message (SMFIR_SETSYMLIST).
const reputationMFL = `#pragma miltermacros eom x_reputation
prog eom
do
  if macro_defined("x_reputation")
    header_add("X-Reputation", getmacro("x_reputation"))
  fi
done
`

// The filter sets {x_reputation} at HELO for one HELO name; mailfromd
// after it adds it as a header, pymilter after it sees it in every later
// callback, and a pymilter whose condition reads it tags only that
// message. The other message gets none of it. Straight from Postfix (its
// own chain), mailfromd never sees the macro.
func TestSeamFilterSetsMacroForLaterMilters(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	mfd := realpeer.StartMailfromd(t, reputationMFL)
	reader, readerLog := realpeer.StartPyMilter(t, realpeer.PyPlan{ReadOnly: true, Macros: []string{"{x_reputation}"}})
	tagger, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Tagged", Value: "poor"}},
	})
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	p := startPmultConfig(t, fmt.Sprintf(`[milter]
listen = [%q]
[[backend]]
name = "reader"
address = %q
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
match = { helo = "poor.example" }
action = "set_macro"
macro = "{x_reputation}"
value = "bad ${client_addr}"
[[backend]]
name = "mfd"
address = %q
[[backend]]
name = "tagger"
address = %q
[backend.if]
macro = { "{x_reputation}" = "bad 127.0.0.1" }
`, spec, reader, mfd, tagger), spec)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	if out, err := pf.Send(t, "--ehlo", "poor.example", "--to", "a@example.com", "--header", "Subject: poor"); err != nil {
		t.Fatalf("poor: %v\n%s", err, out)
	}
	if out, err := pf.Send(t, "--ehlo", "good.example", "--to", "b@example.com", "--header", "Subject: good"); err != nil {
		t.Fatalf("good: %v\n%s", err, out)
	}
	ds := byRecipient(pf.WaitDelivered(t, 2, deliverTimeout))
	poor, good := ds["a@example.com"], ds["b@example.com"]
	if got := poor.HeaderValues("X-Reputation"); len(got) != 1 || strings.TrimSpace(got[0]) != "bad 127.0.0.1" {
		t.Errorf("poor: X-Reputation %q, want mailfromd's header with the filter's value\n%s", got, p.Output())
	}
	if got := poor.HeaderValues("X-Tagged"); len(got) != 1 {
		t.Errorf("poor: X-Tagged %q, want one (the tagger's condition reads the macro)", got)
	}
	if got := good.HeaderValues("X-Reputation"); len(got) != 0 {
		t.Errorf("good: X-Reputation %q, want none", got)
	}
	if got := good.HeaderValues("X-Tagged"); len(got) != 0 {
		t.Errorf("good: X-Tagged %q, want none (the tagger left that message)", got)
	}
	// The reader is before the filter in the chain: it never sees the
	// macro, through libmilter's smfi_getsymval.
	for _, e := range pyEvents(t, readerLog) {
		if v, ok := e.Macros["{x_reputation}"]; ok && v != "" {
			t.Errorf("reader (before the filter) saw {x_reputation} = %q at %s", v, e.Stage)
		}
	}
	if l := logHas(p, "msg=decision", "set_macro:rules@helo={x_reputation}"); l == "" {
		t.Errorf("no set_macro policy on the decision line:\n%s", p.Output())
	}
	// mailfromd asks for {x_reputation}, which Postfix never sends: no
	// warning to change main.cf, the filter before it may set it.
	if l := logLine(settledLog(p), "asked for a macro the MTA did not send", "{x_reputation}"); l != "" {
		t.Errorf("misleading warning: %s", l)
	}

	// Postfix's own chain of the same mailfromd: no such macro.
	direct := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(mfd)})
	if out, err := direct.Send(t, "--ehlo", "poor.example", "--to", "c@example.com"); err != nil {
		t.Fatalf("direct: %v\n%s", err, out)
	}
	dd := direct.WaitDelivered(t, 1, deliverTimeout)
	if got := dd[0].HeaderValues("X-Reputation"); len(got) != 0 {
		t.Errorf("direct: X-Reputation %q: Postfix itself has the macro, the test proves nothing", got)
	}
}

// A pymilter after the filter sees the macro from the stage after the
// one it was set at (MAIL), through libmilter; one with wait_earlier =
// ["mail"] sees it at MAIL itself, and so does its condition, which
// reads it at MAIL.
func TestSeamPyMilterReadsMacro(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter")
	after, afterLog := realpeer.StartPyMilter(t, realpeer.PyPlan{ReadOnly: true, Macros: []string{"{x_reputation}"}})
	waiter, waiterLog := realpeer.StartPyMilter(t, realpeer.PyPlan{Macros: []string{"{x_reputation}"},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Waited", Value: "yes"}}})
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	p := startPmultConfig(t, fmt.Sprintf(`[milter]
listen = [%q]
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
match = { sender = "a@example.org" }
action = "set_macro"
macro = "{x_reputation}"
value = "sender ${mail_addr}"
[[backend]]
name = "after"
address = %q
[[backend]]
name = "waiter"
address = %q
wait_earlier = ["mail"]
[backend.if]
macro = { "{x_reputation}" = "sender a@example.org" }
`, spec, after, waiter), spec)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	if out, err := pf.Send(t, "--from", "a@example.org", "--to", "a@example.com"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if got := ds[0].HeaderValues("X-Waited"); len(got) != 1 {
		t.Errorf("X-Waited %q, want the waiter's header (its condition saw the macro at MAIL)\n%s", got, p.Output())
	}
	for _, e := range pyEvents(t, waiterLog) {
		if e.Stage == "mail" && e.Macros["{x_reputation}"] != "sender a@example.org" {
			t.Errorf("waiter at MAIL: {x_reputation} = %q, want it (wait_earlier)", e.Macros["{x_reputation}"])
		}
	}
	seen := map[string]string{}
	for _, e := range pyEvents(t, afterLog) {
		seen[e.Stage] = e.Macros["{x_reputation}"]
	}
	if seen["mail"] != "" {
		t.Errorf("pymilter saw {x_reputation} = %q at MAIL, where it was set (the envelope runs in parallel)", seen["mail"])
	}
	for _, st := range []string{"rcpt", "data", "eoh", "eom"} {
		if seen[st] != "sender a@example.org" {
			t.Errorf("pymilter at %s: {x_reputation} = %q, want %q (events %v)\n%s", st, seen[st], "sender a@example.org", seen, p.Output())
		}
	}
}

// senderVerifyMFL adds {sender_verify} (the callout backend's tag
// macro) as a header when it is defined.
const senderVerifyMFL = `#pragma miltermacros eom sender_verify
prog eom
do
  if macro_defined("sender_verify")
    header_add("X-Seen-Sender-Verify", getmacro("sender_verify"))
  fi
done
`

// The filter vouches for the sender at MAIL ({spf_result} = pass, for
// the HELO name vouched.example): the callout backend after it does not
// probe (the target sees no connection) and the message is accepted;
// from another HELO it probes, bad@ok.test is not_found and tagged, and
// mailfromd after it reads the tag macro {sender_verify}.
func TestSeamCalloutSkipsSenderVouchedByFilter(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks", "mailfromd")
	w := startSAVWorld(t)
	mfd := realpeer.StartMailfromd(t, senderVerifyMFL)
	spec, p := startPmultText(t, fmt.Sprintf(`[[backend]]
name = "spf"
type = "filter"
[[backend.rule]]
match = { helo = "vouched.example", sender_domain = "ok.test" }
action = "set_macro"
macro = "{spf_result}"
value = "pass"
[[backend]]
name = "sav"
type = "callout"
cache = "none"
skip_macro = "spf_result"
verdict_not_found = "tag"
%s
[[backend]]
name = "mfd"
address = %q
`, w.keys(), mfd))
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})

	n := w.ok.Connections()
	out, err := pf.Send(t, "--ehlo", "vouched.example", "--from", "bad@ok.test", "--to", "a@example.com")
	if err != nil || !strings.Contains(mailReply(out), "250 ") {
		t.Fatalf("vouched: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if got := w.ok.Connections() - n; got != 0 {
		t.Errorf("vouched: the target saw %d connections, want none (skipped)", got)
	}
	if got := ds[0].HeaderValues("X-Sender-Verify"); len(got) != 0 {
		t.Errorf("vouched: X-Sender-Verify %q, want none (not verified)", got)
	}
	if l := logHas(p, "callout skipped", "sender=bad@ok.test", "{spf_result}=pass"); l == "" {
		t.Errorf("no debug line for the skipped sender:\n%s", p.Output())
	}
	if l := logHas(p, "msg=decision", "set_macro:spf@mail={spf_result}", "macro_skip:sav@mail={spf_result}=pass"); l == "" {
		t.Errorf("the decision line lacks the set_macro and macro_skip policies:\n%s", p.Output())
	}

	out, err = pf.Send(t, "--ehlo", "other.example", "--from", "bad@ok.test", "--to", "b@example.com")
	if err != nil {
		t.Fatalf("not vouched: %v\n%s", err, out)
	}
	byRcpt := byRecipient(pf.WaitDelivered(t, 1, deliverTimeout))
	if w.ok.Connections() == n {
		t.Errorf("not vouched: the target saw no probe")
	}
	d := byRcpt["b@example.com"]
	if got := d.HeaderValues("X-Sender-Verify"); len(got) != 1 || strings.TrimSpace(got[0]) != "not_found" {
		t.Errorf("not vouched: X-Sender-Verify %q, want the tag not_found\n%s", got, describe([]realpeer.Delivered{d}))
	}
	if got := d.HeaderValues("X-Seen-Sender-Verify"); len(got) != 1 || strings.TrimSpace(got[0]) != "not_found" {
		t.Errorf("not vouched: mailfromd's X-Seen-Sender-Verify %q, want not_found (the tag macro)\n%s", got, p.Output())
	}
}
