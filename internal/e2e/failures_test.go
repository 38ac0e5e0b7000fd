// failures_test.go: real backends failing under Postfix -> pmult: a
// pymilter killed in the middle of end of message, a pymilter that answers
// RCPT too late, and a backend that is not there at all; each with the
// failure actions that matter, and pmult serving the next message.

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// X-Other is added by the backend that keeps working.
var otherPlan = realpeer.PyPlan{
	EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Other", Value: "yes"}},
}

// TestFailureKilledMidSession kills a pymilter while it sleeps in its end
// of message callback, after it has already sent an ADDHEADER. With
// on_failure = "accept" the message is delivered with the other backend's
// header and without the dead one's; with "tempfail" the client gets a
// 4xx. Either way pmult logs the failure and serves the next message.
func TestFailureKilledMidSession(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"accept", "tempfail"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			realpeer.Require(t, "postfix", "swaks", "pymilter")
			victim, specV, logV := realpeer.StartPyMilterProcess(t, realpeer.PyPlan{
				Stages:     map[string]realpeer.PyStage{"eom": {DelayMS: 3000}},
				EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Victim", Value: "sent before the kill"}},
			})
			specO, logO := realpeer.StartPyMilter(t, otherPlan)
			pf, p := muxPostfix(t, "",
				backend{"victim", specV, fmt.Sprintf("on_failure = %q", action)},
				backend{"other", specO, ""})

			type result struct {
				out string
				err error
			}
			done := make(chan result, 1)
			go func() {
				out, err := pf.Send(t, "--header", "Subject: killed")
				done <- result{out, err}
			}()
			if !waitFor(10*time.Second, func() bool { return pyCount(t, logV, "eom") > 0 }) {
				t.Fatalf("victim never got to end of message")
			}
			time.Sleep(200 * time.Millisecond) // it has sent its ADDHEADER and sleeps
			if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
				t.Fatalf("kill victim: %v", err)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("swaks did not finish after the kill")
			}
			if l := waitLogLine(p, 2*time.Second, "backend failed", "backend=victim", "stage=eom",
				"action="+action); l == "" {
				t.Errorf("pmult logged no failure of backend victim at eom with action %s", action)
			}

			switch action {
			case "accept":
				if r.err != nil {
					t.Fatalf("swaks: %v\n%s", r.err, r.out)
				}
				ds := pf.WaitDelivered(t, 1, deliverTimeout)
				if len(ds) != 1 {
					t.Fatalf("want one delivery, got:\n%s", describe(ds))
				}
				if got := ds[0].Header("X-Other"); got != "yes" {
					t.Errorf("X-Other = %q, want yes (the live backend's edit)\n%s", got, ds[0].Raw)
				}
				if got := ds[0].HeaderValues("X-Victim"); len(got) != 0 {
					t.Errorf("X-Victim %q delivered: the dead backend's edits must be dropped\n%s", got, ds[0].Raw)
				}
			case "tempfail":
				if rep := replyTo(r.out, "."); !strings.HasPrefix(rep, "<** 4") {
					t.Errorf("reply to end of data %q, want 4xx (err %v)\n%s", rep, r.err, r.out)
				}
				expectNoDelivery(t, pf, 500*time.Millisecond)
			}

			// pmult goes on: the next message meets the victim down at
			// connect time (its failure action again) and is otherwise fine.
			out, err := pf.Send(t, "--header", "Subject: after the kill")
			if l := waitLogLine(p, 2*time.Second, "session=2", "backend=victim", "action="+action); l == "" {
				t.Errorf("second message: pmult logged no failure of backend victim")
			}
			switch action {
			case "accept":
				if err != nil {
					t.Fatalf("second message: swaks: %v\n%s", err, out)
				}
				ds := pf.WaitDelivered(t, 1, deliverTimeout)
				if len(ds) != 1 || ds[0].Header("X-Other") != "yes" || ds[0].Header("Subject") != "after the kill" {
					t.Errorf("second message: want one delivery with X-Other, got:\n%s", describe(ds))
				}
			case "tempfail":
				if !hasErrorClass(out, "4") || hasErrorClass(out, "5") {
					t.Errorf("second message: want a 4xx and no 5xx (err %v):\n%s", err, out)
				}
				expectNoDelivery(t, pf, 500*time.Millisecond)
			}
			if !p.Running() {
				t.Errorf("pmult exited: %v", p.ExitErr())
			}
			// Postfix never lost pmult itself.
			if strings.Contains(pf.Log(), "milter inet:") && strings.Contains(pf.Log(), "can't read") {
				t.Errorf("Postfix lost its connection to pmult:\n%s", pf.Log())
			}
			pyErrors(t, logO)
		})
	}
}

// TestFailureReadTimeout: a pymilter takes 4 s to answer one RCPT; pmult
// gives it read_timeout = 1s and on_failure = "reject": that recipient
// gets a 5xx, pmult logs the backend and the timeout, and the next
// message (not slow) is delivered.
func TestFailureReadTimeout(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	specS, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages:     map[string]realpeer.PyStage{"rcpt": {Match: "slow@", DelayMS: 4000}},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Slow", Value: "yes"}},
	})
	specM := realpeer.StartMailfromd(t, headerMFL)
	pf, p := muxPostfix(t, "",
		backend{"slow", specS, "read_timeout = \"1s\"\non_failure = \"reject\""},
		backend{"mfd", specM, ""})

	start := time.Now()
	out, err := pf.Send(t, "--to", "slow@example.com")
	took := time.Since(start)
	if err == nil {
		t.Errorf("swaks succeeded although the only recipient should be rejected:\n%s", out)
	}
	if rep := replyTo(out, "RCPT TO:<slow@example.com>"); !strings.HasPrefix(rep, "<** 5") {
		t.Errorf("reply to RCPT %q, want 5xx\n%s", rep, out)
	}
	if took > 3500*time.Millisecond {
		t.Errorf("the session took %v: the 1s read_timeout did not cut the 4s wait", took)
	}
	if l := waitLogLine(p, 2*time.Second, "backend failed", "backend=slow", "stage=rcpt", "timeout",
		"action=reject"); l == "" {
		t.Errorf("pmult logged no timeout of backend slow at rcpt")
	}
	expectNoDelivery(t, pf, 500*time.Millisecond)

	out, err = pf.Send(t, "--to", "quick@example.com")
	if err != nil {
		t.Fatalf("second message: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 || ds[0].Header("X-Slow") != "yes" || ds[0].Header("X-Mailfromd") != "yes" {
		t.Errorf("second message: want one delivery with both backends' headers, got:\n%s", describe(ds))
	}
}

// TestFailureBackendDownAtStart: one backend's address has no listener.
// With on_failure = "accept" the mail goes through with the other
// backend's header; with "tempfail" the client gets a 4xx.
func TestFailureBackendDownAtStart(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"accept", "tempfail"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			realpeer.Require(t, "postfix", "swaks", "pymilter")
			specO, _ := realpeer.StartPyMilter(t, otherPlan)
			down := fmt.Sprintf("inet:%d@127.0.0.1", realpeer.FreePort(t))
			pf, p := muxPostfix(t, "",
				backend{"down", down, fmt.Sprintf("on_failure = %q", action)},
				backend{"other", specO, ""})

			for i := 1; i <= 2; i++ {
				out, err := pf.Send(t, "--header", fmt.Sprintf("Subject: message %d", i))
				switch action {
				case "accept":
					if err != nil {
						t.Fatalf("message %d: swaks: %v\n%s", i, err, out)
					}
					ds := pf.WaitDelivered(t, 1, deliverTimeout)
					if len(ds) != 1 || ds[0].Header("X-Other") != "yes" {
						t.Errorf("message %d: want one delivery with X-Other, got:\n%s", i, describe(ds))
					}
				case "tempfail":
					if err == nil || !hasErrorClass(out, "4") || hasErrorClass(out, "5") {
						t.Errorf("message %d: want a 4xx and no 5xx (err %v):\n%s", i, err, out)
					}
				}
			}
			if action == "tempfail" {
				expectNoDelivery(t, pf, 500*time.Millisecond)
			}
			if l := logHas(p, "backend failed", "backend=down", "stage=open", "connection refused",
				"action="+action); l == "" {
				t.Errorf("pmult logged no open failure of backend down with action %s", action)
			}
			// The second session found the circuit breaker open: pmult
			// skipped the backend (debug line) with the same action.
			if l := logHas(p, "session=2", "backend skipped", "backend=down", "backend down",
				"action="+action); l == "" {
				t.Errorf("pmult did not log the second session skipping backend down")
			}
		})
	}
}
