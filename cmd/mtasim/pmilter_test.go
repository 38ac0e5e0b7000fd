// pmilter_test.go: `mtasim --pmilter` (mtasim playing smtps over the
// provisional pmilter model) against pmult run in process (config.Parse,
// cfg.Engine, adapters/meta1 and adapters/milter servers on one engine) in
// front of a real pymilter and mailfromd: expect scripts, --mail-file,
// load mode, smtps's timeout flags, and the same script through pmult's
// milter front (-X) giving the same reply codes.

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	adapter "github.com/mailmux/mailmux/adapters/milter"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/realpeer"
	"github.com/mailmux/mailmux/pmult"
)

// startPmult runs pmult's MeTA1 and milter fronts on one engine and
// returns their ports as mtasim specs.
func startPmult(t *testing.T, backends string) (meta1Spec, milterSpec string) {
	t.Helper()
	toml := "listen = []\n[meta1]\nlisten = \"inet://127.0.0.1:1\"\n[meta1.define_macros]\nmail = [\"taid\"]\n" + backends
	cfg, err := config.Parse([]byte(toml), "pmilter_test.toml")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	eng, err := cfg.Engine(log)
	if err != nil {
		t.Fatal(err)
	}
	ms := &m1.Server{Engine: eng, Log: log, Macros: cfg.Meta1.Macros, Version: "test"}
	fs := &adapter.Server{Engine: eng, Log: log}
	var specs []string
	for _, srv := range []interface{ Serve(net.Listener) error }{ms, fs} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		specs = append(specs, fmt.Sprintf("inet:%d@127.0.0.1", ln.Addr().(*net.TCPAddr).Port))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ms.Shutdown(ctx)
		fs.Shutdown(ctx)
		eng.Retire()
	})
	return specs[0], specs[1]
}

const mfl = `prog envrcpt
do
  if $1 = "<nobody@example.com>"
    reject 550 5.1.1 "no such user here"
  fi
done

prog eom
do
  if macro_defined("taid")
    header_add("X-Mult", "${multiplexer} " . getmacro("taid"))
  fi
done
`

func pyAndMailfromd(t *testing.T) string {
	realpeer.Require(t, "pymilter", "mailfromd")
	py, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{
		Stages: map[string]realpeer.PyStage{
			"rcpt": {Action: "reject", Match: "bad@", Reply: &realpeer.PyReply{Code: "550", XCode: "5.7.1", Lines: []string{"py says no"}}},
		},
		EOMActions: []realpeer.PyAction{{Op: "addheader", Name: "X-Py", Value: "yes"}},
	})
	mfd := realpeer.StartMailfromd(t, mfl)
	return fmt.Sprintf("[[backend]]\nname = \"py\"\nurl = %q\n[[backend]]\nname = \"mfd\"\nurl = %q\n", py, mfd)
}

const pmScript = `\E250
ehlo client.example.net
\E250
mail from:<a@example.org>
\E550
rcpt to:<bad@example.com>
\E550
rcpt to:<nobody@example.com>
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

// codes returns the reply codes of a transcript, the greeting left out.
func codes(out string) string {
	var cs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if len(l) >= 4 && l[3] == ' ' && !strings.HasPrefix(l, "220") {
			cs = append(cs, l[:3])
		}
	}
	return strings.Join(cs, " ")
}

func TestPmilterScript(t *testing.T) {
	t.Parallel()
	meta1, milter := startPmult(t, pyAndMailfromd(t))
	code, out, errs := runMain([]string{"--pmilter", meta1}, pmScript)
	if code != 0 || !strings.Contains(out, "550 5.7.1 py says no") || !strings.Contains(out, "550 5.1.1 no such user here") {
		t.Fatalf("--pmilter: exit %d\n%s%s", code, out, errs)
	}
	// The same script through pmult's milter front: the same reply codes.
	code2, out2, errs2 := runMain([]string{"-X", milter}, pmScript)
	if code2 != 0 || codes(out) != codes(out2) || codes(out) != "250 250 550 550 250 354 250 250 250 250 221" {
		t.Errorf("codes differ: --pmilter %q (exit %d), -X %q (exit %d)\n%s%s", codes(out), code, codes(out2), code2, out2, errs2)
	}
	// A wrong expectation: exit 1.
	code, _, errs = runMain([]string{"--pmilter", meta1}, strings.Replace(pmScript, `\E550`, `\E250`, 1))
	if code != 1 || !strings.Contains(errs, "expected 250, but got 550") {
		t.Errorf("wrong expectation: exit %d %s", code, errs)
	}
	// \S sets the client socket; \D a MeTA1 macro (hostname, requested by nobody: harmless).
	code, out, errs = runMain([]string{"--pmilter", meta1},
		"\\S inet client.example.net 192.0.2.7 4444\n\\D hostname=mx.example.org\n\\E250\nehlo x\n\\E250\nmail from:<a@b>\n\\E550\nrcpt to:<bad@example.com>\nquit\n")
	if code != 0 {
		t.Errorf("\\S and \\D: exit %d\n%s%s", code, out, errs)
	}
}

func TestPmilterMailFileAndBatch(t *testing.T) {
	t.Parallel()
	meta1, _ := startPmult(t, pyAndMailfromd(t))
	f := filepath.Join(t.TempDir(), "msg.eml")
	os.WriteFile(f, []byte("From: A <a@example.org>\nTo: good@example.com, bad@example.com\nSubject: hi\n\nbody\n"), 0o644)
	code, out, errs := runMain([]string{"--pmilter", meta1, "--mail-file", f, "--full"}, "")
	for _, want := range []string{"=== message 1: continue", "+ X-Py: yes", "+ X-Mult: pmult ", "rcpt: <good@example.com>\nheaders:",
		"--- resulting message"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s%s", code, want, out, errs)
		}
	}
	// taid is filled from mtasim's queue id (the i macro), requested at mail.
	if i := strings.Index(out, "+ X-Mult: pmult "); i >= 0 {
		if taid := strings.Fields(out[i+len("+ X-Mult: pmult "):])[0]; len(taid) < 6 {
			t.Errorf("taid %q", taid)
		}
	}
	bsmtp := "HELO x\nMAIL FROM:<a@example.org>\nRCPT TO:<good@example.com>\nDATA\nSubject: one\n\nb1\n.\n" +
		"MAIL FROM:<a@example.org>\nRCPT TO:<nobody@example.com>\nRCPT TO:<c@example.com>\nDATA\nSubject: two\n\nb2\n.\nQUIT\n"
	code, out, errs = runMain([]string{"--pmilter", meta1, "--bsmtp", "-"}, bsmtp)
	if code != 0 || !strings.Contains(out, "=== 2 messages: 2 delivered") || strings.Count(out, "+ X-Py: yes") != 2 ||
		!strings.Contains(out, "550 5.1.1 no such user here") {
		t.Errorf("--bsmtp: exit %d\n%s%s", code, out, errs)
	}
}

func TestPmilterLoad(t *testing.T) {
	t.Parallel()
	meta1, _ := startPmult(t, pyAndMailfromd(t))
	code, out, errs := runMain([]string{"--pmilter", meta1, "--concurrency", "4", "--count", "40", "--rcpts", "2"}, "")
	if code != 0 || !strings.Contains(out, "sessions/s") || !strings.Contains(out, "40 sessions, 40 messages, 0 errors") {
		t.Fatalf("load: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("through pmult's MeTA1 front:\n%s", out)
	code, out, _ = runMain([]string{"--pmilter", meta1, "--concurrency", "2", "--count", "10", "--json"}, "")
	if code != 0 || !strings.Contains(out, `"sessions_per_s"`) {
		t.Errorf("load --json: exit %d\n%s", code, out)
	}
}

func TestPmilterTimeoutFlags(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "pymilter")
	py, _ := realpeer.StartPyMilter(t, realpeer.PyPlan{Stages: map[string]realpeer.PyStage{"rcpt": {Match: "slow", DelayMS: 1200}}})
	meta1, _ := startPmult(t, fmt.Sprintf("[[backend]]\nname = \"py\"\nurl = %q\n", py))
	script := func(want string) string {
		return "ehlo x\nmail from:<a@b>\n\\E" + want + "\nrcpt to:<slow@example.com>\n"
	}
	// abort: 421 and the session ends.
	if code, out, errs := runMain([]string{"--pmilter", meta1, "--pmilter-timeout", "300ms", "--pmilter-flags", "abort"},
		script("421")+"\\E250\nrcpt to:<never@example.com>\n"); code != 0 || strings.Contains(out, "Recipient OK") {
		t.Errorf("abort: exit %d\n%s%s", code, out, errs)
	}
	// accept_but_reconnect: the session goes on unfiltered.
	if code, out, errs := runMain([]string{"--pmilter", meta1, "--pmilter-timeout", "300ms", "--pmilter-flags", "accept_but_reconnect"},
		script("250")+"\\E354\ndata\nSubject: s\n\nb\n.\nquit\n"); code != 0 {
		t.Errorf("accept_but_reconnect: exit %d\n%s%s", code, out, errs)
	}
	// Neither flag: a broken filter, as with -X (F=T tempfails, else exit 69).
	if code, out, errs := runMain([]string{"--pmilter", "p, S=" + meta1 + ", F=T, T=R:300ms"}, script("451")); code != 0 {
		t.Errorf("F=T: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runMain([]string{"--pmilter", meta1, "--milter-timeout", "R=300ms"}, script("250")); code != 69 ||
		!strings.Contains(errs, "no reply within 300ms") {
		t.Errorf("no flags: exit %d %s", code, errs)
	}
}

func TestPmilterUsage(t *testing.T) {
	for _, bad := range [][]string{{"--pmilter", "bogus"}, {"--pmilter", "inet:1@127.0.0.1", "-X", "inet:2@127.0.0.1"},
		{"--pmilter-flags", "abort"}, {"--pmilter", "inet:1@127.0.0.1", "--pmilter-flags", "sometimes"}} {
		if code, _, _ := runMain(bad, ""); code != 64 {
			t.Errorf("%q: exit %d, want 64", bad, code)
		}
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := fmt.Sprintf("inet:%d@127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	if code, _, errs := runMain([]string{"--pmilter", dead}, "ehlo x\n"); code != 69 || !strings.Contains(errs, "connection refused") {
		t.Errorf("unreachable: exit %d %s", code, errs)
	}
}

// TestPmilterNoBackends: `mtasim --pmilter` against a bare MeTA1 front (an
// engine with no backends), what the dropped pmilter-sim alias and
// meta1sim.RunScript asserted: every stage accepted with mtasim's replies,
// the client socket and a MeTA1 macro passed, smtps's abort flag accepted,
// dot-stuffing undone in the message the policy milter saw, and the
// message report of a batch printed.
func TestPmilterNoBackends(t *testing.T) {
	ms := &m1.Server{Engine: &pmult.Engine{}, Log: slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ms.Serve(ln)
	t.Cleanup(func() { ms.Shutdown(context.Background()) })
	spec := fmt.Sprintf("inet:%d@127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	script := "\\E250\nEHLO me\nMAIL FROM:<a@x> SIZE=10\nRCPT TO:<b@y>\nDATA\nSubject: s\n\n..dot\n\\E250\n.\nQUIT\n"
	code, out, errs := runMain([]string{"--pmilter", spec, "--pmilter-flags", "abort",
		"--sender-socket", "inet6,client.example.org,2001:db8::1,25", "-D", "taid=T1"}, script)
	for _, want := range []string{"250 Recipient OK", "250 Mail accepted", "221 Done"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("script: exit %d, output lacks %q:\n%s%s", code, want, out, errs)
		}
	}
	bsmtp := "HELO me\nMAIL FROM:<a@x>\nRCPT TO:<b@y>\nDATA\nSubject: s\n\n..dot\n.\nQUIT\n"
	code, out, errs = runMain([]string{"--pmilter", spec, "--bsmtp", "-", "--full"}, bsmtp)
	for _, want := range []string{"=== message 1: continue", "\n.dot\n", "=== 1 messages: 1 delivered"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--bsmtp: exit %d, output lacks %q:\n%s%s", code, want, out, errs)
		}
	}
	// A wrong expectation: exit 1.
	if code, _, errs := runMain([]string{"--pmilter", spec}, "EHLO me\n\\E550\nMAIL FROM:<a@x>\n"); code != 1 {
		t.Errorf("wrong expectation: exit %d %s", code, errs)
	}
	for _, bad := range [][]string{{"--pmilter", spec, "-D", "novalue"}, {"--pmilter", spec, "--sender-socket", "x"}} {
		if code, _, _ := runMain(bad, ""); code != 64 {
			t.Errorf("%q: exit %d, want 64", bad, code)
		}
	}
}
