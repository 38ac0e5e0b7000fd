// conditions_test.go: backend conditions (issue 11) through real Postfix:
// two Postfix smtpd instances point at two named pmult listeners of one
// pmult process; a pymilter backend applies only on one listener, another
// only to one recipient domain.

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestConditionsListenerAndRecipientDomain(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks")
	gate, gateLog := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{
		"mail": {Action: "reject", Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"submission needs auth"}}},
	}})
	tagger, taggerLog := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Tagged", Value: "example.com"}},
	})
	inbound := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	submission := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	p := startPmultConfig(t, fmt.Sprintf(`[milter]
listen = ["inbound=%s", "submission=%s"]
[[backend]]
name = "gate"
address = %q
[backend.if]
listener = "submission"
[[backend]]
name = "tagger"
address = %q
[backend.if]
rcpt_domain = "example.com"
`, inbound, submission, gate, tagger), submission)

	// The Postfix smtpd service for port 25 (inbound).
	mx := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(inbound)})
	if out, err := mx.Send(t, "--to", "a@example.com", "--header", "Subject: one"); err != nil {
		t.Fatalf("inbound, example.com: %v\n%s", err, out)
	}
	if out, err := mx.Send(t, "--to", "b@example.net", "--header", "Subject: two"); err != nil {
		t.Fatalf("inbound, example.net: %v\n%s", err, out)
	}
	ds := byRecipient(mx.WaitDelivered(t, 2, deliverTimeout))
	if got := ds["a@example.com"].HeaderValues("X-Tagged"); len(got) != 1 {
		t.Errorf("a@example.com: X-Tagged %q, want one (tagger applies to example.com)\n%s", got, p.Output())
	}
	if got := ds["b@example.net"].HeaderValues("X-Tagged"); len(got) != 0 {
		t.Errorf("b@example.net: X-Tagged %q, want none (tagger left that message)", got)
	}
	// The gate was never opened for the inbound listener.
	if evs := pyEvents(t, gateLog); len(evs) != 0 {
		t.Errorf("gate got %d events through the inbound listener, want none (never opened): %+v", len(evs), evs)
	}
	// The tagger left the example.net message quietly: it got the
	// envelope, then ABORT, and no end of message.
	eoms := 0
	for _, e := range pyEvents(t, taggerLog) {
		if e.Stage == "eom" {
			eoms++
		}
	}
	if eoms != 1 {
		t.Errorf("tagger got %d end of message, want 1 (only the example.com message)", eoms)
	}

	// The Postfix smtpd service for port 587 (submission): the gate
	// rejects, as in Postfix's own chain with the gate alone.
	sub := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(submission)})
	out, err := sub.Send(t, "--to", "c@example.com")
	direct := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(gate)})
	dout, derr := direct.Send(t, "--to", "c@example.com")
	if err == nil || derr == nil {
		t.Fatalf("submission: want a rejection through pmult (%v) and Postfix's chain (%v)\n%s\n%s", err, derr, out, dout)
	}
	const want = "550 5.7.1 submission needs auth"
	if !strings.Contains(out, want) || !strings.Contains(dout, want) {
		t.Errorf("want %q through pmult and the chain:\n%s\n---\n%s", want, out, dout)
	}
}

// The rule filter as pmult's only backend rejects a client network at
// CONNECT with its multi-line reply.
func TestFilterRejectsNetworkAtConnect(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks")
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	startPmultConfig(t, fmt.Sprintf(`[milter]
listen = [%q]
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
match = { client = ["127.0.0.0/8", "::1"] }
action = "reject"
code = "554"
xcode = "5.7.1"
text = "network blocked\nsee policy"
`, spec), spec)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	out, err := pf.Send(t, "--header", "Subject: blocked")
	if err == nil {
		t.Fatalf("accepted:\n%s", out)
	}
	// Postfix 3.7 answers a milter's reject at CONNECT with its own
	// "554 ... not accepting connections" to the client and logs the
	// milter's reply.
	if !strings.Contains(out, "<** 554 ") {
		t.Errorf("want a 554 greeting:\n%s", out)
	}
	if log := pf.Log(); !strings.Contains(log, "milter-reject: CONNECT from unknown[127.0.0.1]: 554-5.7.1 network blocked") ||
		!strings.Contains(log, "554 5.7.1 see policy") {
		t.Errorf("want the filter's reply in Postfix's log:\n%s", log)
	}
}

// The rule filter, first in the chain, deletes every Authentication-Results
// that claims our own authserv-id and adds a header: the verifier after
// it (pymilter, read-only) never sees the forged ones; the message keeps
// the others.
func TestFilterStripsForgedAuthResults(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks")
	verifier, vlog := realpeer.StartPyMilter(t, realpeer.PyPlan{ReadOnly: true})
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	p := startPmultConfig(t, fmt.Sprintf(`[milter]
listen = [%q]
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
action = "delete_header"
name = "Authentication-Results"
value_regex = '^\s*mx\.test\.local;'
[[backend.rule]]
action = "add_header"
name = "X-Filtered"
value = "by ${j}"
[[backend]]
name = "verifier"
address = %q
`, spec, verifier), spec)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	out, err := pf.Send(t, "--header", "Authentication-Results: mx.test.local; spf=pass",
		"--add-header", "Authentication-Results: other.example; dkim=pass",
		"--add-header", "Authentication-Results: mx.test.local; dkim=pass", "--header", "Subject: forged")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	ar := ds[0].HeaderValues("Authentication-Results")
	if len(ar) != 1 || !strings.Contains(ar[0], "other.example") {
		t.Errorf("Authentication-Results %q, want only other.example's\n%s\n%s", ar, describe(ds), p.Output())
	}
	if x := ds[0].HeaderValues("X-Filtered"); len(x) != 1 || !strings.Contains(x[0], "by mta.test.local") {
		t.Errorf("X-Filtered %q, want one, by mta.test.local", x)
	}
	for _, e := range pyEvents(t, vlog) {
		if e.Stage == "header" && strings.Contains(strings.Join(e.Args, " "), "mx.test.local;") {
			t.Errorf("the verifier saw a forged header: %v", e.Args)
		}
	}
}
