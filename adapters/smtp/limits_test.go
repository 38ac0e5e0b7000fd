package smtp

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

// logged checks that the log has a line with want naming the client.
func logged(t *testing.T, f *front, want string) {
	t.Helper()
	for _, l := range strings.Split(f.log.String(), "\n") {
		if strings.Contains(l, want) && strings.Contains(l, "client=127.0.0.1:") {
			return
		}
	}
	t.Errorf("no log line %q naming the client:\n%s", want, f.log.String())
}

func open(t *testing.T, f *front, ehlo bool) *raw {
	t.Helper()
	r := dialRaw(t, f.addr)
	if got := r.reply(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting %q", got)
	}
	if ehlo {
		r.cmd("EHLO c.example")
	}
	return r
}

func TestLongCommandLine(t *testing.T) {
	f := startFront(t, nil, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, true)
	if got := r.cmd("MAIL FROM:<" + strings.Repeat("a", 3000) + "@example.org>"); got != "500 5.5.2 Error: line too long" {
		t.Errorf("long line: %q", got)
	}
	logged(t, f, "command line too long")
	if got := r.cmd("NOOP"); !strings.HasPrefix(got, "250") {
		t.Errorf("session not usable after a long line: %q", got)
	}
}

func TestTooManyRecipients(t *testing.T) {
	f := startFront(t, func(s *Server) { s.MaxRecipients = 2 }, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, true)
	r.cmd("MAIL FROM:<a@example.org>")
	r.cmd("RCPT TO:<1@example.com>")
	r.cmd("RCPT TO:<2@example.com>")
	if got := r.cmd("RCPT TO:<3@example.com>"); got != "452 4.5.3 Error: too many recipients" {
		t.Errorf("third recipient: %q", got)
	}
	logged(t, f, "too many recipients")
}

func TestMessageTooBig(t *testing.T) {
	f := startFront(t, func(s *Server) { s.MaxMessage = 100 }, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, true)
	if got := r.cmd("MAIL FROM:<a@example.org> SIZE=1000"); got != "552 5.3.4 Message size exceeds fixed limit" {
		t.Errorf("declared size: %q", got)
	}
	r.cmd("MAIL FROM:<a@example.org>")
	r.cmd("RCPT TO:<x@example.com>")
	r.cmd("DATA")
	if got := r.cmd("Subject: x\r\n\r\n" + strings.Repeat("0123456789\r\n", 20) + "."); got != "552 5.3.4 Error: message file too big" {
		t.Errorf("big message: %q", got)
	}
	logged(t, f, "message too big")
	if len(f.hop.delivered()) != 0 {
		t.Error("a too-big message was relayed")
	}
	if got := r.cmd("NOOP"); !strings.HasPrefix(got, "250") {
		t.Errorf("session lost after a big message: %q", got)
	}
}

func TestHeaderTooLong(t *testing.T) {
	f := startFront(t, func(s *Server) { s.MaxHeader = 1024 }, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, true)
	r.cmd("MAIL FROM:<a@example.org>")
	r.cmd("RCPT TO:<x@example.com>")
	r.cmd("DATA")
	if got := r.cmd("Subject: x\r\n" + strings.Repeat(" folded\r\n", 200) + "\r\nbody\r\n."); got != "552 5.3.4 Error: message header too long" {
		t.Errorf("long header: %q", got)
	}
	logged(t, f, "header longer than the limit")
}

func TestBareLF(t *testing.T) {
	// normalize: bare LF lines are CRLF lines, and "\n.\n" does not end the
	// data (SMTP smuggling): one message, the smuggled lines inside it.
	f := startFront(t, nil, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, true)
	r.cmd("MAIL FROM:<a@example.org>")
	r.cmd("RCPT TO:<x@example.com>")
	r.cmd("DATA")
	if got := r.cmd("Subject: x\n\nline one\n.\nMAIL FROM:<evil@example.net>\r\n."); !strings.HasPrefix(got, "250") {
		t.Fatalf("end of data: %q", got)
	}
	d := f.hop.delivered()
	if len(d) != 1 || !strings.HasSuffix(d[0].msg, "\r\n\r\nline one\r\n\r\nMAIL FROM:<evil@example.net>\r\n") {
		t.Fatalf("delivered %+v", d)
	}

	g := startFront(t, func(s *Server) { s.BareLF = BareLFReject }, pmulttest.New("b", pmult.Caps{}))
	r = open(t, g, true)
	r.cmd("MAIL FROM:<a@example.org>")
	r.cmd("RCPT TO:<x@example.com>")
	r.cmd("DATA")
	if got := r.cmd("Subject: x\n\nbody\r\n."); got != "550 5.5.2 Error: bare <LF> received" {
		t.Errorf("bare LF in data, reject: %q", got)
	}
	logged(t, g, "bare LF in the message")
	r.write("NOOP\n")
	if got := r.reply(); got != "550 5.5.2 Error: bare <LF> received" {
		t.Errorf("bare LF command, reject: %q", got)
	}
}

func TestPipeliningAbuse(t *testing.T) {
	f := startFront(t, nil, pmulttest.New("b", pmult.Caps{}))
	// HELO (no PIPELINING), then a burst.
	r := open(t, f, false)
	r.cmd("HELO c.example")
	r.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.com>\r\n")
	if got := r.reply(); got != "554 5.5.0 Error: SMTP protocol synchronization" {
		t.Errorf("pipelining without PIPELINING: %q", got)
	}
	logged(t, f, "improper command pipelining")
	if got := r.reply(); got != "" {
		t.Errorf("connection not closed: %q", got)
	}
	// EHLO pipelined with what follows it.
	r = open(t, f, false)
	r.write("EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n")
	if got := r.reply(); got != "554 5.5.0 Error: SMTP protocol synchronization" {
		t.Errorf("EHLO pipelined: %q", got)
	}
	// With PIPELINING, MAIL RCPT RCPT DATA in one go is fine.
	r = open(t, f, true)
	r.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\n")
	for _, want := range []string{"250", "250", "250", "354"} {
		if got := r.reply(); !strings.HasPrefix(got, want) {
			t.Errorf("pipelined group: %q, want %s", got, want)
		}
	}
}

func TestCommandsOutOfOrder(t *testing.T) {
	f := startFront(t, nil, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, false)
	for _, tc := range []struct{ cmd, want string }{
		{"MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first"},
		{"EHLO c.example", "250"},
		{"RCPT TO:<x@example.com>", "503 5.5.1 Error: need MAIL command"},
		{"DATA", "503 5.5.1 Error: need RCPT command"},
		{"MAIL FROM:<a@example.org>", "250"},
		{"MAIL FROM:<a@example.org>", "503 5.5.1 Error: nested MAIL command"},
		{"DATA", "554 5.5.1 Error: no valid recipients"},
		{"BOGUS\x01", "502 5.5.2 Error: command not recognized"},
	} {
		if got := r.cmd(tc.cmd); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

func TestTooManyErrors(t *testing.T) {
	f := startFront(t, func(s *Server) { s.MaxErrors = 3 }, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, true)
	r.cmd("RCPT TO:<x@example.com>")
	r.cmd("RCPT TO:<x@example.com>")
	if got := r.cmd("RCPT TO:<x@example.com>"); !strings.HasPrefix(got, "421 4.7.0") {
		t.Errorf("third error: %q", got)
	}
	logged(t, f, "too many errors")
}

// An unknown command the backends refuse counts as an error like any
// other: at the limit, 421 instead of their reply.
func TestTooManyRefusedUnknownCommands(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	b.On[pmult.KindUnknown] = pmulttest.Step{Verdict: pmult.Reject, Text: "550 5.5.1 not here"}
	f := startFront(t, func(s *Server) { s.MaxErrors = 2 }, b)
	r := open(t, f, true)
	if got := r.cmd("ETRN example.org"); got != "550 5.5.1 not here" {
		t.Errorf("first: %q", got)
	}
	if got := r.cmd("ETRN example.org"); !strings.HasPrefix(got, "421 4.7.0") {
		t.Errorf("second refused unknown command, at the limit: %q, want 421 4.7.0", got)
	}
	logged(t, f, "too many errors")
}

func TestDataNeverFinished(t *testing.T) {
	b := pmulttest.New("b", pmult.Caps{})
	f := startFront(t, func(s *Server) { s.DataTimeout = 200 * time.Millisecond }, b)
	r := open(t, f, true)
	r.cmd("MAIL FROM:<a@example.org>")
	r.cmd("RCPT TO:<x@example.com>")
	r.cmd("DATA")
	r.write("Subject: never ends\r\n\r\nbody\r\n")
	if got := r.reply(); got != "421 4.4.2 mx.test Error: timeout exceeded" {
		t.Errorf("stalled data: %q", got)
	}
	logged(t, f, "timeout waiting for the client")
	if len(f.hop.delivered()) != 0 || !f.hop.txns[0].aborted {
		t.Error("the next-hop transaction was not aborted")
	}
	if !strings.Contains(b.KindsString(), "abort") {
		t.Errorf("the engine got no abort: %s", b.KindsString())
	}
	// Another client is served meanwhile.
	if err := f.send(t, "a@example.org", []string{"x@example.com"}, "Subject: ok\r\n\r\nok\r\n"); err != nil {
		t.Errorf("second client: %v", err)
	}
}

func TestCommandTimeout(t *testing.T) {
	f := startFront(t, func(s *Server) { s.CommandTimeout = 200 * time.Millisecond }, pmulttest.New("b", pmult.Caps{}))
	r := open(t, f, false)
	if got := r.reply(); got != "421 4.4.2 mx.test Error: timeout exceeded" {
		t.Errorf("idle client: %q", got)
	}
	logged(t, f, "timeout waiting for the client")
}

func TestShutdownDrains(t *testing.T) {
	f := startFront(t, nil, pmulttest.New("b", pmult.Caps{}))
	idle := open(t, f, true)
	busy := open(t, f, true)
	busy.cmd("MAIL FROM:<a@example.org>")
	done := make(chan error, 1)
	go func() { done <- f.srv.Shutdown(t.Context()) }()
	// The idle session is told at once; the busy one finishes its message.
	if got := idle.reply(); !strings.HasPrefix(got, "421 4.3.2") {
		t.Errorf("idle session at shutdown: %q", got)
	}
	for _, c := range []string{"RCPT TO:<x@example.com>", "DATA"} {
		if got := busy.cmd(c); !strings.HasPrefix(got, "250") && !strings.HasPrefix(got, "354") {
			t.Fatalf("%s during shutdown: %q", c, got)
		}
	}
	if got := busy.cmd("Subject: s\r\n\r\nb\r\n."); !strings.HasPrefix(got, "250") {
		t.Errorf("message during shutdown: %q", got)
	}
	if got := busy.cmd("MAIL FROM:<a@example.org>"); !strings.HasPrefix(got, "421 4.3.2") {
		t.Errorf("next transaction during shutdown: %q", got)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if len(f.hop.delivered()) != 1 {
		t.Errorf("the message in progress was not relayed")
	}
}

func TestForbiddenCommands(t *testing.T) {
	f := startFront(t, nil, pmulttest.New("b", pmult.Caps{}))
	for _, line := range []string{"GET / HTTP/1.1", "Subject: hello", "post /x"} {
		r := open(t, f, false)
		if got := r.cmd(line); got != "221 2.7.0 Error: I can break rules, too. Goodbye." {
			t.Errorf("%q: %q", line, got)
		}
		if got := r.reply(); got != "" {
			t.Errorf("%q: connection not closed: %q", line, got)
		}
	}
	logged(t, f, "forbidden command")
}

func TestPregreet(t *testing.T) {
	f := startFront(t, nil, pmulttest.New("b", pmult.Caps{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := dialRaw(t, ln.Addr().String())
	r.write("EHLO bot.example\r\nMAIL FROM:<spam@example.net>\r\n")
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// The connection is served once its bytes are queued: they came
	// before any greeting.
	// (A kernel state with no event to wait on: polled, with a bound.)
	for deadline := time.Now().Add(5 * time.Second); pending(nc) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client's bytes never showed in the receive queue (SIOCINQ)")
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); f.srv.newConn(nc).Serve(t.Context()) }()
	if got := r.reply(); got != "554 5.5.0 Error: SMTP protocol synchronization" {
		t.Errorf("pregreet: %q", got)
	}
	<-done
	if !strings.Contains(f.log.String(), "client sent before the greeting") {
		t.Errorf("no log line:\n%s", f.log.String())
	}
}

// A Server given the process's Budget holds its messages in it, not in a
// budget of its own of MemoryBudget.
func TestServerSharedBudget(t *testing.T) {
	b := pmult.NewBudget(1234)
	s := &Server{Budget: b, MemoryBudget: 1 << 30}
	s.init()
	if s.budget != b {
		t.Errorf("front budget %p (limit %d), want the shared one %p", s.budget, s.budget.Limit(), b)
	}
}
