// mtasim_test.go: mailfromd's MTA simulator, mtasim, drives pmult in front
// of a pymilter and mailfromd with expect scripts (\E): accepted,
// rejected and tempfailed recipients with the backends' reply texts, a
// whole message through DATA, and a wrong expectation that must fail.
// mtasim cannot apply CHGFROM or QUARANTINE, so the backends use neither.

package e2e

import (
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// tempMFL makes mailfromd tempfail one recipient and add a header.
const tempMFL = `prog envrcpt
do
  if $1 = "<temp@example.com>"
    tempfail 451 4.7.1 "greylisted by mailfromd"
  fi
done

prog eom
do
  header_add("X-Mailfromd", "yes")
done
`

// mtasimMuxScript: one good, one rejected (pymilter), one tempfailed
// (mailfromd) recipient, then the message. mtasim 8.15 reads an \E inside
// DATA as message text, and the reply to "." cannot be expected: the test
// finds "250 Mail accepted" right after the 354 in mtasim's output instead.
const mtasimMuxScript = `\S inet client.example.net 192.0.2.7 4567
\E250
ehlo client.example.net
\E250
mail from:<a@example.org>
\E250
rcpt to:<good@example.com>
\E550
rcpt to:<bad@example.com>
\E451
rcpt to:<temp@example.com>
\E354
data
Subject: through pmult
From: a@example.org

hello from mtasim
.
\E221
quit
`

func TestMtasimThroughPmult(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim", "pymilter", "mailfromd")
	specP, logP := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &realpeer.PyReply{
				Code: "550", XCode: "5.1.1", Lines: []string{"no such user here"}}},
		},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "1"}},
	})
	specM := realpeer.StartMailfromd(t, tempMFL)
	// mtasim offers NR_HDR, NR_EOH and NR_BODY but waits for those
	// replies all the same: pmult must not accept the offer.
	spec, p := startPmult(t, "[milter]\ndefer_content = false", backend{"py", specP, ""}, backend{"mfd", specM, ""})
	logPmultOnFailure(t, p)

	stdout, stderr, code := realpeer.RunMtasim(t, spec, mtasimMuxScript)
	if code != realpeer.MtasimOK {
		t.Fatalf("mtasim exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, realpeer.MtasimOK, stdout, stderr)
	}
	stdout = strings.ReplaceAll(stdout, "\r\n", "\n")
	for _, want := range []string{"550 5.1.1 no such user here", "451 4.7.1 greylisted by mailfromd",
		"354 Enter mail, end with \".\" on a line by itself\n250 Mail accepted for delivery\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("mtasim stdout lacks %q:\n%s", want, stdout)
		}
	}
	evs := pyEvents(t, logP)
	var sawConnect, sawEOM bool
	var rcpts []string
	for _, e := range evs {
		switch e.Stage {
		case "connect":
			sawConnect = len(e.Args) >= 3 && e.Args[0] == "client.example.net" && strings.Contains(e.Args[2], "192.0.2.7")
		case "rcpt":
			rcpts = append(rcpts, e.Args[0])
		case "eom":
			sawEOM = true
		}
	}
	if !sawConnect {
		t.Errorf("pymilter did not see the \\S client (client.example.net, 192.0.2.7): %v", evs)
	}
	if !sawEOM {
		t.Errorf("pymilter never saw end of message")
	}
	if len(rcpts) != 3 {
		t.Errorf("pymilter saw recipients %q, want all three", rcpts)
	}
	pyErrors(t, logP)

	// Wrong expectations fail: the rejected or the tempfailed recipient
	// expected to pass.
	for name, bad := range map[string]string{
		"rejected rcpt":   strings.Replace(mtasimMuxScript, "\\E550\n", "\\E250\n", 1),
		"tempfailed rcpt": strings.Replace(mtasimMuxScript, "\\E451\n", "\\E250\n", 1),
	} {
		if bad == mtasimMuxScript {
			t.Fatalf("%s: script not changed", name)
		}
		stdout, stderr, code = realpeer.RunMtasim(t, spec, bad)
		if code != realpeer.MtasimExpectFail {
			t.Errorf("mtasim with a wrong expectation at %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s",
				name, code, realpeer.MtasimExpectFail, stdout, stderr)
		}
	}
	if !p.Running() {
		t.Errorf("pmult exited: %v", p.ExitErr())
	}
}
