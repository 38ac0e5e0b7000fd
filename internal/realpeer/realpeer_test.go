// realpeer_test.go: proves the harness against real software with no
// multiplexer in between: Postfix -> pymilter, Postfix -> mailfromd,
// mtasim -> pymilter, mtasim -> mailfromd.

package realpeer

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const deliverTimeout = 20 * time.Second

func pyEvents(t *testing.T, log func() []string) []PyEvent {
	t.Helper()
	evs, err := ParsePyEvents(log())
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func findEvent(evs []PyEvent, stage string, arg0 string) *PyEvent {
	for i := range evs {
		if evs[i].Stage == stage && (arg0 == "" || len(evs[i].Args) > 0 && evs[i].Args[0] == arg0) {
			return &evs[i]
		}
	}
	return nil
}

func byRecipient(ds []Delivered) map[string]Delivered {
	m := map[string]Delivered{}
	for _, d := range ds {
		m[d.Recipient] = d
	}
	return m
}

func describe(ds []Delivered) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "--- %s (queue %s)\n%s\n", d.File, d.QueueID, d.Raw)
	}
	return b.String()
}

func TestRequireAll(t *testing.T) {
	Require(t)
}

// fatalRecorder is a testing.TB whose Fatalf records instead of stopping.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestRequireMissingFails(t *testing.T) {
	f := &fatalRecorder{TB: t}
	Require(f, "swaks", "no-such-tool-realpeer")
	if !strings.Contains(f.msg, "no-such-tool-realpeer") || !strings.Contains(f.msg, InstallScript) ||
		strings.Contains(f.msg, "swaks:") {
		t.Errorf("Require message should name only the missing tool and %s, got:\n%s", InstallScript, f.msg)
	}
}

func TestSpecAddr(t *testing.T) {
	for _, c := range []struct{ spec, network, addr, postfix string }{
		{"inet:7000@127.0.0.1", "tcp", "127.0.0.1:7000", "inet:127.0.0.1:7000"},
		{"inet:127.0.0.1:7000", "tcp", "127.0.0.1:7000", "inet:127.0.0.1:7000"},
		{"unix:/tmp/x.sock", "unix", "/tmp/x.sock", "unix:/tmp/x.sock"},
	} {
		n, a, err := SpecAddr(c.spec)
		if err != nil || n != c.network || a != c.addr {
			t.Errorf("SpecAddr(%q) = %q, %q, %v; want %q, %q", c.spec, n, a, err, c.network, c.addr)
		}
		if got := PostfixMilter(c.spec); got != c.postfix {
			t.Errorf("PostfixMilter(%q) = %q, want %q", c.spec, got, c.postfix)
		}
	}
}

// Postfix -> pymilter: header edits, change-from, add/delete recipient and
// body replacement all show in the delivered copies.
func TestPostfixPyMilterModifications(t *testing.T) {
	t.Parallel()
	Require(t, "postfix", "swaks", "pymilter")
	spec, log := StartPyMilter(t, PyPlan{
		EOMActions: []PyAction{
			{Op: "addheader", Name: "X-Realpeer", Value: "added"},
			{Op: "insheader", Name: "X-Top", Value: "inserted", Index: 0},
			{Op: "chgheader", Name: "Subject", Value: "changed subject"},
			{Op: "chgheader", Name: "X-Remove-Me", Value: ""},
			{Op: "chgfrom", Addr: "<changed@example.org>"},
			{Op: "addrcpt", Addr: "<added@example.com>"},
			{Op: "delrcpt", Addr: "<gone@example.com>"},
			{Op: "replacebody", Body: "replaced body\r\nline 2\r\n"},
		},
	})
	pf := StartPostfix(t, PostfixOptions{Milters: PostfixMilter(spec)})
	out, err := pf.Send(t, "--from", "orig@example.org", "--to", "b@example.com,gone@example.com",
		"--header", "Subject: original", "--header", "X-Remove-Me: please", "--body", "original body")
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 2, deliverTimeout)
	m := byRecipient(ds)
	if len(ds) != 2 || m["b@example.com"].Raw == nil || m["added@example.com"].Raw == nil {
		t.Fatalf("want deliveries to b@ and added@ only, got:\n%s", describe(ds))
	}
	for _, d := range ds {
		if d.ReturnPath != "changed@example.org" {
			t.Errorf("%s: Return-Path %q, want changed@example.org", d.Recipient, d.ReturnPath)
		}
		if got := d.Header("X-Realpeer"); got != "added" {
			t.Errorf("%s: X-Realpeer %q, want added", d.Recipient, got)
		}
		if got := d.Header("X-Top"); got != "inserted" {
			t.Errorf("%s: X-Top %q, want inserted", d.Recipient, got)
		}
		if got := d.Header("Subject"); got != "changed subject" {
			t.Errorf("%s: Subject %q, want changed subject", d.Recipient, got)
		}
		if got := d.HeaderValues("X-Remove-Me"); len(got) != 0 {
			t.Errorf("%s: X-Remove-Me still present: %q", d.Recipient, got)
		}
		if got := string(d.Body); got != "replaced body\nline 2\n" {
			t.Errorf("%s: body %q, want replaced", d.Recipient, got)
		}
		if d.QueueID == "" {
			t.Errorf("%s: no queue id from file name %s", d.Recipient, d.File)
		}
	}
	if t.Failed() {
		t.Logf("deliveries:\n%s", describe(ds))
	}

	evs := pyEvents(t, log)
	if e := findEvent(evs, "rcpt", "<b@example.com>"); e == nil {
		t.Errorf("milter did not log RCPT <b@example.com>: %v", log())
	} else if e.Macros["{rcpt_addr}"] != "b@example.com" {
		t.Errorf("RCPT macros %v lack {rcpt_addr}=b@example.com", e.Macros)
	}
	if e := findEvent(evs, "mail", "<orig@example.org>"); e == nil || e.Macros["{mail_addr}"] != "orig@example.org" {
		t.Errorf("milter did not log MAIL <orig@example.org> with {mail_addr}: %+v", e)
	}
	if e := findEvent(evs, "eom", ""); e == nil || e.Macros["i"] == "" {
		t.Errorf("milter did not log EOM with the queue id macro i: %+v", e)
	}
	for _, e := range evs {
		if e.Stage == "error" {
			t.Errorf("milter error: %v", e.Args)
		}
	}
}

// Postfix -> pymilter: a recipient rejected with a multi-line reply; the
// other recipient is delivered.
func TestPostfixPyMilterMultilineReject(t *testing.T) {
	t.Parallel()
	Require(t, "postfix", "swaks", "pymilter")
	spec, log := StartPyMilter(t, PyPlan{
		Stages: map[string]PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &PyReply{
				Code: "550", XCode: "5.7.1", Lines: []string{"first line of refusal", "second line of refusal"}}},
		},
	})
	pf := StartPostfix(t, PostfixOptions{Milters: PostfixMilter(spec)})
	out, err := pf.Send(t, "--to", "good@example.com,bad@example.com")
	for _, want := range []string{"550-5.7.1 first line of refusal", "550 5.7.1 second line of refusal"} {
		if !strings.Contains(out, want) {
			t.Errorf("swaks transcript lacks %q (err %v):\n%s", want, err, out)
		}
	}
	t.Logf("swaks with one rejected recipient of two: err = %v", err)
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 || ds[0].Recipient != "good@example.com" {
		t.Errorf("want one delivery to good@example.com, got:\n%s", describe(ds))
	}

	// Only recipient rejected: swaks reports failure.
	out, err = pf.Send(t, "--to", "bad@example.com")
	if err == nil {
		t.Errorf("swaks succeeded although the only recipient was rejected:\n%s", out)
	}
	if !strings.Contains(out, "550 5.7.1 second line of refusal") {
		t.Errorf("transcript lacks the reply:\n%s", out)
	}
	if evs := pyEvents(t, log); findEvent(evs, "rcpt", "<bad@example.com>") == nil {
		t.Errorf("milter did not log RCPT <bad@example.com>: %v", log())
	}
}

// Postfix -> pymilter: QUARANTINE puts the message in the hold queue.
func TestPostfixPyMilterQuarantine(t *testing.T) {
	t.Parallel()
	Require(t, "postfix", "swaks", "pymilter")
	spec, _ := StartPyMilter(t, PyPlan{
		EOMActions: []PyAction{{Op: "quarantine", Reason: "held by realpeer test"}},
	})
	pf := StartPostfix(t, PostfixOptions{Milters: PostfixMilter(spec)})
	if out, err := pf.Send(t); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	deadline := time.Now().Add(deliverTimeout)
	var ids []string
	for time.Now().Before(deadline) {
		if ids = pf.HoldQueue(t); len(ids) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(ids) == 0 {
		t.Fatalf("hold queue empty after quarantine\nqueue:\n%s\nmaillog:\n%s", pf.Queue(), pf.Log())
	}
	// Postfix logs the hold, not the milter's reason.
	if !strings.Contains(pf.Log(), "milter triggers HOLD action") {
		t.Errorf("maillog does not mention the milter hold:\n%s", pf.Log())
	}
	if ds := pf.Deliveries(t); len(ds) != 0 {
		t.Errorf("quarantined message was delivered:\n%s", describe(ds))
	}
}

const exampleMFL = `prog envrcpt
do
  if $1 = "<bad@example.com>"
    reject 550 5.1.1 "no such user"
  fi
done

prog eom
do
  header_add("X-Mailfromd", "yes")
done
`

// Postfix -> mailfromd with the example MFL.
func TestPostfixMailfromd(t *testing.T) {
	t.Parallel()
	Require(t, "postfix", "swaks", "mailfromd")
	spec := StartMailfromd(t, exampleMFL)
	pf := StartPostfix(t, PostfixOptions{Milters: PostfixMilter(spec)})
	out, err := pf.Send(t, "--to", "good@example.com,bad@example.com")
	if !strings.Contains(out, "550 5.1.1 no such user") {
		t.Errorf("transcript lacks mailfromd's reject (err %v):\n%s", err, out)
	}
	ds := pf.WaitDelivered(t, 1, deliverTimeout)
	if len(ds) != 1 || ds[0].Recipient != "good@example.com" {
		t.Fatalf("want one delivery to good@example.com, got:\n%s", describe(ds))
	}
	if got := ds[0].Header("X-Mailfromd"); got != "yes" {
		t.Errorf("X-Mailfromd = %q, want yes:\n%s", got, ds[0].Raw)
	}
}

const mtasimScript = `\E250
ehlo client.example.net
\E250
mail from:<a@example.org>
\E550
rcpt to:<bad@example.com>
\E250
rcpt to:<good@example.com>
\E354
data
Subject: hi

body
.
\E221
quit
`

// mtasim -> pymilter: the expect script passes, a wrong expectation fails.
func TestMtasimPyMilter(t *testing.T) {
	t.Parallel()
	Require(t, "mtasim", "pymilter")
	spec, log := StartPyMilter(t, PyPlan{
		Stages: map[string]PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &PyReply{Code: "550", XCode: "5.1.1", Lines: []string{"nope"}}},
		},
		EOMActions: []PyAction{{Op: "addheader", Name: "X-Py", Value: "1"}},
	})
	stdout, stderr, code := RunMtasim(t, spec, mtasimScript)
	if code != MtasimOK {
		t.Fatalf("mtasim exit %d, want 0\nstdout:\n%s\nstderr:\n%s\nmilter log:\n%s", code, stdout, stderr, strings.Join(log(), "\n"))
	}
	if !strings.Contains(stdout, "550 5.1.1 nope") {
		t.Errorf("mtasim stdout lacks the milter's reply:\n%s", stdout)
	}
	bad := strings.Replace(mtasimScript, `\E550`, `\E250`, 1)
	stdout, stderr, code = RunMtasim(t, spec, bad)
	if code != MtasimExpectFail {
		t.Errorf("mtasim with a wrong expectation: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, MtasimExpectFail, stdout, stderr)
	}
	if evs := pyEvents(t, log); findEvent(evs, "eom", "") == nil {
		t.Errorf("milter never saw EOM: %v", log())
	}
}

// mtasim -> mailfromd, and mtasim against nothing.
func TestMtasimMailfromd(t *testing.T) {
	t.Parallel()
	Require(t, "mtasim", "mailfromd")
	spec := StartMailfromd(t, exampleMFL)
	stdout, stderr, code := RunMtasim(t, spec, mtasimScript)
	if code != MtasimOK || !strings.Contains(stdout, "550 5.1.1 no such user") {
		t.Errorf("mtasim exit %d, want 0 and the MFL reject\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	dead := fmt.Sprintf("inet:%d@127.0.0.1", FreePort(t))
	stdout, stderr, code = RunMtasim(t, dead, mtasimScript, "--milter-timeout=C=1")
	if code != MtasimUnreachable {
		t.Errorf("mtasim against a closed port: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, MtasimUnreachable, stdout, stderr)
	}
}

// FreePort never returns a port twice in one test binary, even when the
// kernel hands the just-closed port out again.
func TestFreePortUnique(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("FreePort returned %d twice", p)
		}
		seen[p] = true
	}
}
