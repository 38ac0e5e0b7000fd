// realpeer_test.go: our mtasim against real milters (pymilter on
// libmilter, mailfromd with a small MFL script), transcripts compared line
// by line with mailfromd's own mtasim on the same scripts; batched SMTP
// with edits; load mode against a real pymilter and against pmult run in
// process in front of two pymilters.

package mtasim_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	adapter "github.com/mailmux/mailmux/adapters/milter"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/realpeer"
	"github.com/mailmux/mailmux/sim/mta"
)

func ours(t *testing.T, spec, script string) (string, error) {
	t.Helper()
	p, err := mtasim.ParsePort(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &mtasim.Config{Backend: p.Backend(6), FilterName: spec, RequireHelo: true}
	var out bytes.Buffer
	err = mtasim.RunScript(context.Background(), cfg, mtasim.NewLineReader(strings.NewReader(script)), &out, mtasim.ScriptOptions{})
	return out.String(), err
}

// replies drops the greeting (its text names the program).
func replies(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")), "\n") {
		if !strings.HasPrefix(l, "220") {
			out = append(out, l)
		}
	}
	return out
}

func compare(t *testing.T, spec, script string) {
	t.Helper()
	theirs, stderr, code := realpeer.RunMtasim(t, spec, script)
	mine, err := ours(t, spec, script)
	if code != mtasim.ExitCode(err) {
		t.Errorf("exit: mailfromd's mtasim %d, ours %d (%v)\nstderr: %s", code, mtasim.ExitCode(err), err, stderr)
	}
	a, b := replies(theirs), replies(mine)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("transcripts differ\nmailfromd's mtasim:\n%s\nours:\n%s", theirs, mine)
	}
}

const script = `\E250
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
From: a@example.org

body
.
\E250
mail from:<b@example.org>
rcpt to:<good@example.com>
rset
\E221
quit
`

func TestCompareWithMailfromdMtasimPyMilter(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim", "pymilter")
	spec, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &realpeer.PyReply{Code: "550", XCode: "5.1.1", Lines: []string{"nope"}}},
			"eom":  {Action: "reject", Match: "", Reply: &realpeer.PyReply{Code: "554", XCode: "5.7.0", Lines: []string{"first", "second"}}},
		},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "1"}},
	})
	// The multi-line EOM reject: both print "554-5.7.0 first", "554 5.7.0 second".
	compare(t, spec, script)
	// A wrong expectation: exit 1 from both.
	compare(t, spec, strings.Replace(script, `\E550`, `\E250`, 1))
	// Tempfail at MAIL, default text.
	spec2, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{"mail": {Action: "tempfail"}}})
	compare(t, spec2, "ehlo x\n\\E451\nmail from:<a@b>\nquit\n")
}

const mfl = `prog envrcpt
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

func TestCompareWithMailfromdMtasimMailfromd(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim", "mailfromd")
	spec := realpeer.StartMailfromd(t, mfl)
	compare(t, spec, script)
	// Unreachable milter: 69 from both.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := fmt.Sprintf("inet:%d@127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	_, _, code := realpeer.RunMtasim(t, dead, script, "--milter-timeout=C=1")
	_, err := ours(t, dead, script)
	if code != realpeer.MtasimUnreachable || mtasim.ExitCode(err) != mtasim.ExitUnavailable {
		t.Errorf("unreachable: mailfromd's mtasim %d, ours %d (%v)", code, mtasim.ExitCode(err), err)
	}
}

// mailfromd's mtasim cannot carry out CHGFROM or QUARANTINE (451 4.3.2);
// ours applies them and reports them.
func TestChgfromQuarantine(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim", "pymilter")
	spec, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{
		{Op: "chgfrom", Addr: "<new@example.org>"}, {Op: "quarantine", Reason: "held by test"}}})
	script := "ehlo x\nmail from:<a@example.org>\nrcpt to:<b@example.com>\ndata\nSubject: s\n\nbody\n.\nquit\n"
	theirs, _, _ := realpeer.RunMtasim(t, spec, script)
	if !strings.Contains(theirs, "451 4.3.2") {
		t.Logf("mailfromd's mtasim now handles CHGFROM/QUARANTINE?\n%s", theirs)
	}
	p, _ := mtasim.ParsePort(spec)
	var res *mtasim.Result
	cfg := &mtasim.Config{Backend: p.Backend(6), OnMessage: func(r *mtasim.Result) { res = r }}
	var out bytes.Buffer
	err := mtasim.RunScript(context.Background(), cfg, mtasim.NewLineReader(strings.NewReader(script)), &out, mtasim.ScriptOptions{})
	if err != nil || res == nil || res.Final.From != "<new@example.org>" || res.Quarantine != "held by test" {
		t.Fatalf("err %v res %+v\n%s", err, res, out.String())
	}
}

func TestBatchPyMilter(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "pymilter")
	spec, log := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &realpeer.PyReply{Code: "550", XCode: "5.1.1", Lines: []string{"nope"}}}},
		EOMActions: []realpeer.PyAction{
			{Op: "addheader", Name: "X-Py", Value: "added"},
			{Op: "chgheader", Name: "Subject", Value: "changed"},
			{Op: "addrcpt", Addr: "<extra@example.com>"},
		}})
	p, _ := mtasim.ParsePort(spec)
	in := "HELO client\nMAIL FROM:<a@example.org>\nRCPT TO:<good@example.com>\nRCPT TO:<bad@example.com>\nDATA\n" +
		"Subject: one\nFrom: a@example.org\n\nbody 1\n..dotted\n.\nVRFY x\nETRN y\nEHLO again\n" +
		"MAIL FROM:<b@example.org>\nRCPT TO:<c@example.com>\nDATA\nSubject: two\n\nbody 2\n.\nQUIT\nignored after QUIT\n"
	var out bytes.Buffer
	st, err := mtasim.RunBatch(context.Background(), &mtasim.Config{Backend: p.Backend(6)},
		mtasim.NewLineReader(strings.NewReader(in)), &out, mtasim.BatchOptions{Full: true})
	if err != nil || st.Messages != 2 || st.Delivered != 2 {
		t.Fatalf("%v %+v\n%s", err, st, out.String())
	}
	o := out.String()
	for _, want := range []string{"line 4: RCPT TO:<bad@example.com>: 550 5.1.1 nope", "=== message 1: continue",
		"=== message 2: continue", "- Subject: one", "+ Subject: changed", "- Subject: two", "+ X-Py: added",
		"rcpt:+<extra@example.com>", "\nbody 1\n.dotted\n"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	evs, _ := realpeer.ParsePyEvents(log())
	n := map[string]int{}
	for _, e := range evs {
		n[e.Stage]++
	}
	if n["helo"] != 0 || n["eom"] != 2 || n["unknown"] != 0 {
		t.Errorf("milter saw %v (want no HELO, no UNKNOWN, 2 EOM)", n)
	}
}

func TestLoadPyMilter(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "pymilter")
	spec, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "1"}}})
	p, _ := mtasim.ParsePort(spec)
	var progress int
	res, err := mtasim.RunLoad(context.Background(), &mtasim.Config{Backend: p.Backend(6)},
		mtasim.LoadOptions{Concurrency: 4, Count: 200, Rcpts: 2, Progress: func(int64, int64, float64) { progress++ }})
	if err != nil || res.Sessions != 200 || res.Messages != 200 || res.Errors != 0 || progress == 0 {
		t.Fatalf("%v %+v", err, res)
	}
	var b bytes.Buffer
	res.Print(&b)
	t.Logf("pymilter:\n%s", b.String())
	if !strings.Contains(b.String(), "rcpt") || res.Stages[0].Stage != "open" || res.Verdicts["continue"] != 200 {
		t.Errorf("result: %s", b.String())
	}
}

// pmult in process (config.Parse, cfg.Engine, adapters/milter.Server) in
// front of two pymilters, loaded through its milter socket.
func TestLoadPmult(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "pymilter")
	s1, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-One", Value: "1"}}})
	s2, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{
		"rcpt": {Action: "reject", Match: "rcpt1@"}}})
	toml := fmt.Sprintf("listen = [\"inet:127.0.0.1:0\"]\n[[backend]]\nname = \"one\"\nurl = %q\n[[backend]]\nname = \"two\"\nurl = %q\n", s1, s2)
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	eng, err := cfg.Engine(log)
	if err != nil {
		t.Fatal(err)
	}
	srv := &adapter.Server{Engine: eng, Log: log}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	p, _ := mtasim.ParsePort("inet:" + ln.Addr().String())
	res, err := mtasim.RunLoad(context.Background(), &mtasim.Config{Backend: p.Backend(6)},
		mtasim.LoadOptions{Concurrency: 4, Duration: 1500 * time.Millisecond, Rcpts: 2})
	if err != nil || res.Sessions == 0 || res.Errors != 0 || res.Messages != res.Sessions {
		t.Fatalf("%v %+v", err, res)
	}
	var b bytes.Buffer
	res.JSON(&b)
	if !strings.Contains(b.String(), `"messages_per_s"`) {
		t.Errorf("JSON: %s", b.String())
	}
	res.Print(&b)
	t.Logf("pmult with 2 pymilters:\n%s", b.String())
}
