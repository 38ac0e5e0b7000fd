// conditions_test.go: the rule filter (issue 11) through real Postfix. The
// named listeners and per-condition chains are in cond_listeners_test.go
// (one Postfix instance with two smtpd services).

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

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
