// outcomes_test.go: Postfix -> pmult -> two real milters (pymilter,
// mailfromd); each test makes one backend give one kind of answer and
// checks what Postfix did with the message: hold queue, discard, a
// multi-line tempfail at MAIL, a reject at end of data, ACCEPT at CONNECT
// beside a header edit, and a backend in evaluation mode.

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// headerMFL makes mailfromd add "X-Mailfromd: yes" to every message.
const headerMFL = `prog eom
do
  header_add("X-Mailfromd", "yes")
done
`

// rejectEOMMFL makes mailfromd refuse every message at end of data.
const rejectEOMMFL = `prog eom
do
  reject 554 5.7.1 "message refused by test policy"
done
`

// muxPostfix starts pmult with the backends and a Postfix whose only
// milter is pmult.
func muxPostfix(t *testing.T, top string, bs ...backend) (*realpeer.Postfix, *realpeer.Process) {
	t.Helper()
	spec, p := startPmult(t, top, bs...)
	logPmultOnFailure(t, p)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	return pf, p
}

// One backend quarantines: the message goes to the hold queue and is not
// delivered; the other backend's header edit does not matter.
func TestOutcomeQuarantine(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	specQ, logQ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "quarantine", Reason: "held by pmult test"}},
	})
	specM := realpeer.StartMailfromd(t, headerMFL)
	pf, _ := muxPostfix(t, "", backend{"quarantiner", specQ, ""}, backend{"mfd", specM, ""})

	out, err := pf.Send(t)
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	var ids []string
	waitFor(deliverTimeout, func() bool { ids = pf.HoldQueue(t); return len(ids) > 0 })
	if len(ids) != 1 {
		t.Fatalf("hold queue %v, want one message\nqueue:\n%s", ids, pf.Queue())
	}
	if !strings.Contains(pf.Log(), "milter triggers HOLD action") {
		t.Errorf("maillog does not mention the milter's HOLD")
	}
	expectNoDelivery(t, pf, 1500*time.Millisecond)
	pyErrors(t, logQ)
}

// One backend discards at end of message: the client gets 250, nothing is
// delivered.
func TestOutcomeDiscard(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	specD, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{"eom": {Action: "discard"}},
	})
	specM := realpeer.StartMailfromd(t, headerMFL)
	pf, _ := muxPostfix(t, "", backend{"mfd", specM, ""}, backend{"discarder", specD, ""})

	out, err := pf.Send(t)
	if err != nil {
		t.Fatalf("swaks failed, want 250 for a discarded message: %v\n%s", err, out)
	}
	if rep := replyTo(out, "."); !strings.HasPrefix(rep, "<-  250") {
		t.Errorf("reply to end of data %q, want 250\n%s", rep, out)
	}
	expectNoDelivery(t, pf, 2*time.Second)
	if !strings.Contains(pf.Log(), "milter triggers DISCARD action") {
		t.Errorf("maillog does not mention the milter's DISCARD")
	}
}

// One backend tempfails MAIL FROM with a two-line 451: the client sees
// both lines, nothing is delivered.
func TestOutcomeTempfailMailMultiline(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	specT, logT := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{"mail": {Action: "tempfail", Reply: &realpeer.PyReply{
			Code: "451", XCode: "4.7.1", Lines: []string{"sender is greylisted", "try again in 5 minutes"}}}},
	})
	specM := realpeer.StartMailfromd(t, headerMFL)
	pf, _ := muxPostfix(t, "", backend{"mfd", specM, ""}, backend{"greylister", specT, ""})

	out, err := pf.Send(t)
	if err == nil {
		t.Errorf("swaks succeeded although MAIL FROM was tempfailed:\n%s", out)
	}
	rep := replyTo(out, "MAIL FROM:")
	for _, want := range []string{"451-4.7.1 sender is greylisted", "451 4.7.1 try again in 5 minutes"} {
		if !strings.Contains(rep, want) {
			t.Errorf("reply to MAIL FROM lacks %q; got %q\n%s", want, rep, out)
		}
	}
	expectNoDelivery(t, pf, 500*time.Millisecond)
	if pyCount(t, logT, "mail") != 1 {
		t.Errorf("greylister saw %d MAIL events, want 1", pyCount(t, logT, "mail"))
	}
}

// One backend (mailfromd) rejects the whole message at end of data with
// its own text; the other one's header edit is thrown away.
func TestOutcomeRejectAtEOM(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	specP, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "1"}},
	})
	specM := realpeer.StartMailfromd(t, rejectEOMMFL)
	pf, _ := muxPostfix(t, "", backend{"py", specP, ""}, backend{"mfd", specM, ""})

	out, err := pf.Send(t, "--to", "one@example.com,two@example.com")
	if err == nil {
		t.Errorf("swaks succeeded although the message was rejected:\n%s", out)
	}
	if rep := replyTo(out, "."); !strings.Contains(rep, "<** 554 5.7.1 message refused by test policy") {
		t.Errorf("reply to end of data %q, want mailfromd's 554 5.7.1 text\n%s", rep, out)
	}
	// Both recipients were accepted before DATA.
	for _, r := range []string{"RCPT TO:<one@example.com>", "RCPT TO:<two@example.com>"} {
		if rep := replyTo(out, r); !strings.HasPrefix(rep, "<-  250") {
			t.Errorf("reply to %s: %q, want 250", r, rep)
		}
	}
	expectNoDelivery(t, pf, 1*time.Second)
}

// One backend answers ACCEPT at CONNECT (done for the whole connection:
// it sees nothing more, its planned header is not added) while the other
// still adds its header.
func TestOutcomeAcceptAtConnect(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	specA, logA := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages:     map[string]realpeer.PyStage{"connect": {Action: "accept"}},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Accepter", Value: "should not appear"}},
	})
	specM := realpeer.StartMailfromd(t, headerMFL)
	pf, _ := muxPostfix(t, "", backend{"accepter", specA, ""}, backend{"mfd", specM, ""})

	out, err := pf.Send(t, "--header", "Subject: accept test")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 {
		t.Fatalf("want one delivery, got:\n%s", describe(ds))
	}
	d := ds[0]
	if got := d.Header("X-Mailfromd"); got != "yes" {
		t.Errorf("X-Mailfromd = %q, want yes (the other backend's edit)\n%s", got, d.Raw)
	}
	if got := d.HeaderValues("X-Accepter"); len(got) != 0 {
		t.Errorf("X-Accepter present (%q) although that backend accepted at CONNECT\n%s", got, d.Raw)
	}
	if got := d.Header("Subject"); got != "accept test" {
		t.Errorf("Subject = %q", got)
	}
	if n := pyCount(t, logA, "connect"); n != 1 {
		t.Errorf("accepter saw %d CONNECT events, want 1", n)
	}
	for _, st := range []string{"mail", "rcpt", "header", "eom"} {
		if n := pyCount(t, logA, st); n != 0 {
			t.Errorf("accepter saw %d %s events after its ACCEPT at CONNECT, want 0", n, st)
		}
	}
}

// A backend in evaluation mode rejects everything: the mail is delivered
// (with the other backend's header, without the shadow's) and pmult logs
// what it would have answered. A second message, whose MAIL FROM the
// shadow rejects, is delivered at once: pmult must not send that message's
// RCPT to the shadow (libmilter ignores commands after a rejected MAIL and
// would never answer; pmult would wait read_timeout for nothing).
func TestOutcomeEvaluationMode(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "pymilter", "mailfromd")
	refuse := &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"shadow says no"}}
	specE, logE := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"mail": {Action: "reject", Match: "early@", Reply: refuse},
			"rcpt": {Action: "reject", Reply: refuse},
			"eom":  {Action: "reject", Reply: refuse},
		},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Shadow", Value: "should not appear"}},
	})
	specM := realpeer.StartMailfromd(t, headerMFL)
	pf, p := muxPostfix(t, "", backend{"shadow", specE, "mode = \"evaluate\"\nread_timeout = \"8s\""},
		backend{"mfd", specM, ""})

	out, err := pf.Send(t)
	if err != nil {
		t.Fatalf("swaks: %v (an evaluating backend must change nothing)\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 {
		t.Fatalf("want one delivery, got:\n%s", describe(ds))
	}
	if got := ds[0].Header("X-Mailfromd"); got != "yes" {
		t.Errorf("X-Mailfromd = %q, want yes\n%s", got, ds[0].Raw)
	}
	if got := ds[0].HeaderValues("X-Shadow"); len(got) != 0 {
		t.Errorf("X-Shadow %q added by a backend in evaluation mode\n%s", got, ds[0].Raw)
	}
	for _, stage := range []string{"rcpt", "eom"} {
		if l := waitLogLine(p, 2*time.Second, "evaluation: backend would have answered", "backend=shadow",
			"stage="+stage, "verdict=reject", "shadow says no"); l == "" {
			t.Errorf("pmult did not log the evaluation line for backend shadow at %s", stage)
		}
	}
	if l := logHas(p, "evaluation: backend would have edited", "backend=shadow", "X-Shadow"); l == "" {
		t.Errorf("pmult did not log the shadow's header edit")
	}
	if n := pyCount(t, logE, "eom"); n != 1 {
		t.Errorf("shadow backend saw %d EOM, want 1 (it sees the whole message)", n)
	}

	// The shadow rejects MAIL FROM: the message still goes through, at once.
	start := time.Now()
	out, err = pf.Send(t, "--from", "early@example.org")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("message took %v through pmult (the shadow's read_timeout is 8s)", d)
	}
	ds = pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 || ds[0].ReturnPath != "early@example.org" || ds[0].Header("X-Mailfromd") != "yes" {
		t.Fatalf("want one delivery from early@ with X-Mailfromd, got:\n%s", describe(ds))
	}
	if l := logHas(p, "evaluation: backend would have answered", "backend=shadow", "stage=mail"); l == "" {
		t.Errorf("pmult did not log the evaluation line for the shadow's MAIL reject")
	}
	if l := logLine(settledLog(p), "backend failed"); l != "" {
		t.Errorf("the shadow backend failed: %s", l)
	}
	if n := pyCount(t, logE, "rcpt"); n != 1 {
		t.Errorf("shadow backend saw %d RCPT events, want 1 (none after its MAIL reject)", n)
	}
}
