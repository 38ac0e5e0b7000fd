// macros_test.go: macro tables and synthesis (issue 12) with real
// software: mailfromd asking for {client_addr} and {mail_addr} behind
// mtasim (which sends almost no macros); opendkim signing only when
// {daemon_name} says ORIGINATING, set by pmult's table of the submission
// listener only; the private Sendmail in front of mailfromd asking for
// Postfix-named macros and {listener}; the MeTA1 front's define_macros
// through the same tables.

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	m1 "github.com/mailmux/mailmux/adapters/meta1"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/internal/realpeer"
	meta1sim "github.com/mailmux/mailmux/sim/meta1"
)

// startPmultConfig runs pmult on the config text cfg (listen addresses
// included) and waits for spec.
func startPmultConfig(t *testing.T, cfg, spec string) *realpeer.Process {
	t.Helper()
	path := filepath.Join(realpeer.Dir(t), "pmult.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := realpeer.StartProcess(t, "pmult", exec.Command(pmultBin, "-c", path, "--debug=debug"))
	p.WaitReady(t, spec, 10*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pmult config:\n%s\npmult log:\n%s", cfg, p.Output())
		}
	})
	return p
}

// needMacrosMFL: mailfromd asks (SMFIR_SETSYMLIST, from the macros its
// envfrom handler uses) for {client_addr} and {mail_addr} at MAIL: an
// undefined one is a runtime error (tempfail); it rejects unless
// {client_addr} is the client's address. (mtasim sends {mail_addr} itself,
// the sender's local part; the MTA's value wins over a derived one.)
const needMacrosMFL = `prog envfrom
do
  if ${client_addr} != "192.0.2.7" or ${mail_addr} = ""
    reject(550, "5.7.2", "wrong macros: " . ${client_addr} . " " . ${mail_addr})
  fi
done
`

const mtasimMacrosScript = `\S inet client.example.net 192.0.2.7 4567
\E250
ehlo client.example.net
\E250
mail from:<a@example.org>
\E250
rcpt to:<good@example.com>
\E221
quit
`

// mtasim sends no {client_addr}: straight to mailfromd, MAIL fails;
// through pmult, which derives it for the backend that asked, it is
// accepted.
func TestMacrosMtasimSynthesised(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim", "mailfromd")
	mfd := realpeer.StartMailfromd(t, needMacrosMFL)

	out, errOut, code := realpeer.RunMtasim(t, mfd, mtasimMacrosScript)
	if code == 0 {
		t.Fatalf("mtasim straight to mailfromd passed: mtasim now sends the macros, the test proves nothing:\n%s%s", out, errOut)
	}
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	startPmultConfig(t, fmt.Sprintf("[milter]\nlisten = [%q]\n[[backend]]\nname = \"mfd\"\naddress = %q\n", spec, mfd), spec)
	if out, errOut, code := realpeer.RunMtasim(t, spec, mtasimMacrosScript); code != 0 {
		t.Errorf("through pmult: mtasim exit %d:\n%s%s", code, out, errOut)
	}
}

// opendkim signs only when {daemon_name} is ORIGINATING (MacroList; mail
// from 127.0.0.1 is not internal for it). Postfix's own chain signs only
// with milter_macro_daemon_name = ORIGINATING; through pmult, the table of
// the listener named submission sets it, and the listener named inbound
// leaves Postfix's value: signed there, unsigned here.
func TestMacrosOpenDKIMSignsOnListenerTable(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks", "opendkim", "opendkim-genkey")
	key := realpeer.GenerateDKIMKey(t, "example.org", "test")
	signer := realpeer.StartOpenDKIM(t, realpeer.OpenDKIMOptions{Mode: "s", Key: key,
		InternalHosts: "192.0.2.99", Extra: "MacroList daemon_name=ORIGINATING\n"})
	inbound := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	submission := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	startPmultConfig(t, fmt.Sprintf(`[milter]
listen = ["inbound=%s", "submission=%s"]
[macros.listener.submission]
set = { "connect:{daemon_name}" = "ORIGINATING" }
[[backend]]
name = "signer"
address = %q
`, inbound, submission, signer), submission)

	signed := func(t *testing.T, milters string, extra map[string]string) bool {
		t.Helper()
		pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: milters, ExtraMain: extra})
		if out, err := pf.Send(t, "--header", "Subject: macro table", "--body", "body\n"); err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		ds := pf.WaitDelivered(t, 1, deliverTimeout)
		if len(ds) != 1 {
			t.Fatalf("want 1 delivery, got %d\n%s", len(ds), pf.Log())
		}
		return len(ds[0].HeaderValues("DKIM-Signature")) > 0
	}
	direct := realpeer.PostfixMilter(signer)
	if signed(t, direct, nil) {
		t.Fatal("Postfix's chain: signed without {daemon_name}=ORIGINATING: the MacroList does not decide, the test proves nothing")
	}
	if !signed(t, direct, map[string]string{"milter_macro_daemon_name": "ORIGINATING"}) {
		t.Fatal("Postfix's chain with milter_macro_daemon_name = ORIGINATING: not signed")
	}
	if !signed(t, realpeer.PostfixMilter(submission), nil) {
		t.Error("through pmult's submission listener: not signed")
	}
	if signed(t, realpeer.PostfixMilter(inbound), nil) {
		t.Error("through pmult's inbound listener: signed")
	}
}

// postfixNamesMFL asks (SMFIR_SETSYMLIST) at MAIL for macros under their
// Postfix names and for {listener}, which only pmult derives (the name of
// the listener the MTA came in on); an undefined one is a runtime error
// (tempfail).
const postfixNamesMFL = `prog envfrom
do
  if ${client_addr} != "127.0.0.1" or ${mail_addr} != "a@example.org" or ${daemon_addr} = "" or ${client_ptr} = "" or ${client_connections} = "" or ${daemon_port} = ""
    reject 550 5.7.2 "wrong macros"
  fi
  if ${listener} != "mx"
    reject 550 5.7.3 "wrong listener"
  fi
done
`

// The private Sendmail in front of pmult (listener named mx) in front of
// mailfromd asking for Postfix-named macros: pmult asks Sendmail for them
// and derives {listener}: the message is accepted. Sendmail's own chain
// to the same mailfromd cannot give {listener}: tempfailed.
func TestMacrosSendmailPostfixNames(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "sendmail", "swaks", "mailfromd")
	mfd := realpeer.StartMailfromd(t, postfixNamesMFL)
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	pm := startPmultConfig(t, fmt.Sprintf("[milter]\nlisten = [\"mx=%s\"]\n[[backend]]\nname = \"mfd\"\naddress = %q\n", spec, mfd), spec)
	viaPmult := realpeer.StartSendmail(t, realpeer.SendmailOptions{Milter: spec})
	chain := realpeer.StartSendmail(t, realpeer.SendmailOptions{Milter: mfd})
	send := func(sm *realpeer.Sendmail) string {
		out, _ := sm.Send(t, "--from", "a@example.org", "--to", "b@example.com")
		return out
	}
	if out := send(viaPmult); !strings.Contains(out, "Message accepted for delivery") {
		t.Errorf("through pmult: not accepted:\n%s\npmult log:\n%s", out, pm.Output())
	}
	if out := send(chain); !strings.Contains(out, "MAIL FROM") || strings.Contains(out, "Message accepted for delivery") {
		t.Errorf("Sendmail's chain accepted without {listener}: the test proves nothing:\n%s", out)
	}
}

// meta1MFL asks at MAIL for MeTA1's hostname under its Sendmail name j
// (the built-in meta1 table), {auth_type} (define_macros) and
// {daemon_name} (set by the global [macros] table).
const meta1MFL = `prog envfrom
do
  if $j != "mx.meta1.test" or ${auth_type} != "PLAIN" or ${daemon_name} != "ORIGINATING"
    reject 550 5.7.2 "wrong macros"
  fi
done
`

// The MeTA1 front (pmult's provisional pmilter model, driven by the
// smtps simulator) with define_macros goes through the same tables:
// MeTA1's names reach mailfromd under Sendmail's, and the global table's
// set applies. (With dialect = "none" mailfromd tempfails: no j.)
func TestMacrosMeta1DefineMacros(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mailfromd")
	mfd := realpeer.StartMailfromd(t, meta1MFL)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`[milter]
listen = []
[meta1]
listen = "inet://127.0.0.1:1"
[meta1.define_macros]
connect = ["hostname"]
mail = ["auth_type"]
[macros]
set = { "connect:{daemon_name}" = "ORIGINATING" }
[[backend]]
name = "mfd"
address = %q
`, mfd)), "meta1.toml")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, nil))
	eng, err := cfg.Engine(log)
	if err != nil {
		t.Fatal(err)
	}
	srv := &m1.Server{Engine: eng, Log: log, Macros: cfg.Meta1.Macros, Version: "e2e"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		eng.Retire()
	})
	ctx := context.Background()
	c, err := meta1sim.Dial(ctx, meta1sim.Config{Network: "tcp", Address: ln.Addr().String(), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Macros["hostname"] = "mx.meta1.test"
	s.Macros["auth_type"] = "PLAIN"
	if r, err := s.Connect(ctx, netip.MustParseAddr("192.0.2.5"), 40000, "client.example.org"); err != nil || r.Objects() {
		t.Fatalf("connect: %+v %v\n%s", r, err, logs.String())
	}
	if r, err := s.Mail(ctx, "<a@example.org>"); err != nil || r.Objects() {
		t.Errorf("mail: %+v %v (want accepted: mailfromd got j, {auth_type} and {daemon_name})\n%s", r, err, logs.String())
	}
}

// syncLog is a log sink for concurrent writers.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mta-config's chroot-correct form: a pmult socket under Postfix's queue
// directory, written relative to it, reaches a chrooted smtpd (master.cf
// chroot column y, Debian's default); the absolute path, the form
// mta-config printed before, does not (the milter is unreachable:
// milter_default_action = tempfail).
func TestMacrosMTAConfigChrootedPostfix(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "postfix", "swaks")
	const rel = "pmult/pmult.sock"
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{ChrootSmtpd: true, Milters: "unix:" + rel})
	queue := filepath.Join(pf.Dir, "queue")
	if err := os.MkdirAll(filepath.Join(queue, "pmult"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(queue, rel)
	cfg := fmt.Sprintf("[milter]\nlisten = [\"unix:%s\"]\n", sock)
	startPmultConfig(t, cfg, "unix:"+sock)

	conf := filepath.Join(realpeer.Dir(t), "c.toml")
	os.WriteFile(conf, []byte(cfg), 0o644)
	out, err := exec.Command(pmultBin, "mta-config", "postfix", "-c", conf, "--queue-directory", queue).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "smtpd_milters = unix:"+rel+"\n") {
		t.Fatalf("mta-config: %v, want smtpd_milters = unix:%s in:\n%s", err, rel, out)
	}
	if o, err := pf.Send(t, "--header", "Subject: chroot"); err != nil {
		t.Fatalf("chrooted smtpd, relative socket: swaks: %v\n%s", err, o)
	}
	if ds := pf.WaitDelivered(t, 1, deliverTimeout); len(ds) != 1 {
		t.Fatalf("want 1 delivery, got %d", len(ds))
	}
	abs := realpeer.StartPostfix(t, realpeer.PostfixOptions{ChrootSmtpd: true, Milters: "unix:" + sock})
	if o, err := abs.Send(t, "--header", "Subject: chroot"); err == nil || !strings.Contains(o, "451") {
		t.Errorf("chrooted smtpd, absolute socket path: want 451 (milter unreachable), got %v:\n%s", err, o)
	}
}
