// checks_test.go: small assertions shared by the outcome, failure, mtasim,
// reuse and unix-socket tests: pmult log lines, SMTP replies in swaks
// transcripts, milter events, "nothing delivered".

package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// logPmultOnFailure prints pmult's whole log when the test failed (the
// realpeer cleanup prints only its tail).
func logPmultOnFailure(t *testing.T, p *realpeer.Process) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pmult log (full):\n%s", p.Output())
		}
	})
}

// logLine returns the first line of log holding every one of subs, or "".
func logLine(log string, subs ...string) string {
	for _, l := range strings.Split(log, "\n") {
		ok := true
		for _, s := range subs {
			if !strings.Contains(l, s) {
				ok = false
				break
			}
		}
		if ok {
			return l
		}
	}
	return ""
}

// waitLogLine waits until pmult has logged a line holding every one of subs
// and returns it, or "" after timeout.
func waitLogLine(p *realpeer.Process, timeout time.Duration, subs ...string) string {
	deadline := time.Now().Add(timeout)
	for {
		if l := logLine(p.Output(), subs...); l != "" || time.Now().After(deadline) {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logHas waits up to 5 s for a line of p's log with all of subs:
// pmult writes its lines in batches under load (logx.Batch), a line up
// to 50 ms after it was logged.
func logHas(p *realpeer.Process, subs ...string) string {
	return waitLogLine(p, 5*time.Second, subs...)
}

// settledLog is p's log once the lines it holds are written (logx.Batch
// holds one at most 50 ms): for checks that a line is absent.
func settledLog(p *realpeer.Process) string {
	time.Sleep(150 * time.Millisecond)
	return p.Output()
}

// waitFor polls cond every 20 ms until it holds (true) or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// smtpErrRE matches the server's error replies in a swaks transcript
// ("<** 451-4.7.1 text" or "<** 550 5.7.1 text").
var smtpErrRE = regexp.MustCompile(`(?m)^<\*\* +([245]\d\d)[ -]`)

// errorCodes returns the codes of the error replies in a swaks transcript.
func errorCodes(out string) []string {
	var codes []string
	for _, m := range smtpErrRE.FindAllStringSubmatch(out, -1) {
		codes = append(codes, m[1])
	}
	return codes
}

// hasErrorClass reports whether the transcript holds an error reply whose
// code starts with class ("4" or "5").
func hasErrorClass(out, class string) bool {
	for _, c := range errorCodes(out) {
		if strings.HasPrefix(c, class) {
			return true
		}
	}
	return false
}

// replyTo returns the server's reply lines (as swaks prints them) to the
// first client line starting with cmd, e.g. "RCPT TO:<slow@example.com>"
// or "." (end of data).
func replyTo(out, cmd string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if c, ok := strings.CutPrefix(l, " -> "); ok && strings.HasPrefix(c, cmd) {
			var rep []string
			for _, r := range lines[i+1:] {
				if !strings.HasPrefix(r, "<") {
					break
				}
				rep = append(rep, r)
			}
			return strings.Join(rep, "\n")
		}
	}
	return ""
}

// expectNoDelivery waits for a while and fails the test when anything was
// delivered.
func expectNoDelivery(t *testing.T, pf *realpeer.Postfix, wait time.Duration) {
	t.Helper()
	time.Sleep(wait)
	if ds := pf.Deliveries(t); len(ds) != 0 {
		t.Errorf("want nothing delivered, got:\n%s", describe(ds))
	}
}

// pyCount counts the pymilter's log events of one stage.
func pyCount(t *testing.T, log func() []string, stage string) int {
	t.Helper()
	n := 0
	for _, e := range pyEvents(t, log) {
		if e.Stage == stage {
			n++
		}
	}
	return n
}

// pyErrors reports the pymilter's "error" events (a failed action).
func pyErrors(t *testing.T, log func() []string) {
	t.Helper()
	for _, e := range pyEvents(t, log) {
		if e.Stage == "error" {
			t.Errorf("pymilter error: %v", e.Args)
		}
	}
}
