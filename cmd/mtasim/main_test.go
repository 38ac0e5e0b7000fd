// main_test.go: the command line: option forms, exit codes (0, 1, 64, 65,
// 69), trace file, --mail-file, daemon mode with a TCP client.

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

func tm(t *testing.T) string {
	t.Helper()
	srv := &testmilter.Server{Actions: mp.ActAllMask, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		switch {
		case p.Code == mp.CmdRcpt && strings.Contains(string(p.Data), "bad@"):
			return []mp.Packet{testmilter.Reply(mp.RespReplyCode, testmilter.Str("550 5.1.1 no such user"))}
		case p.Code == mp.CmdEOB:
			return []mp.Packet{testmilter.Reply(mp.RespAddHeader, testmilter.Str("X-Test", "yes")), {Code: mp.RespContinue}}
		}
		return nil
	}}
	a, err := srv.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return fmt.Sprintf("inet:%d@127.0.0.1", a.(*net.TCPAddr).Port)
}

func runMain(args []string, stdin string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

const script = "\\E250\nehlo x\nmail from:<a@b>\n\\E550\nrcpt to:<bad@example.com>\nrcpt to:<good@example.com>\n\\E354\ndata\nSubject: s\n\nbody\n.\n\\E221\nquit\n"

func TestExitCodes(t *testing.T) {
	spec := tm(t)
	trace := filepath.Join(t.TempDir(), "trace")
	if code, out, errs := runMain([]string{"-X" + spec, "--trace-file", trace}, script); code != 0 || !strings.Contains(out, "550 5.1.1 no such user") {
		t.Errorf("ok script: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(trace); !strings.Contains(string(b), "rcpt to:<bad@example.com>\n550 5.1.1 no such user\n") {
		t.Errorf("trace:\n%s", b)
	}
	if code, _, errs := runMain([]string{"--port=" + spec}, strings.Replace(script, `\E550`, `\E 250`, 1)); code != 1 || !strings.Contains(errs, "expected 250, but got 550") {
		t.Errorf("failed expectation: exit %d %s", code, errs)
	}
	if code, _, errs := runMain([]string{"-X", spec}, "ehlo x\n\\Zfoo\n"); code != 65 || !strings.Contains(errs, "unknown administrative command") {
		t.Errorf("malformed script: exit %d %s", code, errs)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := fmt.Sprintf("x, S=inet:%d@127.0.0.1, T=C:2s", ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	if code, _, errs := runMain([]string{"-X", dead}, script); code != 69 || !strings.Contains(errs, "connection refused") {
		t.Errorf("unreachable: exit %d %s", code, errs)
	}
	for _, bad := range [][]string{{"-X", "bogus"}, {"--nosuch"}, {"--daemon", "--bsmtp", "x"}, {"--count", "5"}, {"-X", spec, "--milter-version", "9"}} {
		if code, _, _ := runMain(bad, ""); code != 64 {
			t.Errorf("%q: exit %d, want 64", bad, code)
		}
	}
	// -bs and no milter: a plain MTA.
	if code, out, _ := runMain([]string{"-bs"}, strings.Replace(script, "\\E550\n", "", 1)); code != 0 || !strings.Contains(out, "250 Recipient OK") {
		t.Errorf("-bs without milter: %d\n%s", code, out)
	}
}

func TestMailFile(t *testing.T) {
	spec := tm(t)
	f := filepath.Join(t.TempDir(), "msg.eml")
	os.WriteFile(f, []byte("From: A <a@example.org>\nTo: b@example.com, C <c@example.com>\nSubject: hi\n\nbody\n"), 0o644)
	code, out, errs := runMain([]string{"-X", spec, "--mail-file", f, "--full"}, "")
	for _, want := range []string{"=== message 1: continue", "from: <a@example.org>", "rcpt: <c@example.com>", "+ X-Test: yes", "--- resulting message"} {
		if !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s%s", code, want, out, errs)
		}
	}
	code, out, _ = runMain([]string{"-X", spec, "--mail-file", f, "--rcpt", "bad@example.com"}, "")
	if code != 0 || !strings.Contains(out, "refused before DATA") {
		t.Errorf("refused: %d\n%s", code, out)
	}
	if code, _, _ := runMain([]string{"-X", spec, "--mail-file", "/nonexistent"}, ""); code != 66 {
		t.Errorf("missing file: exit %d", code)
	}
}

func TestDaemon(t *testing.T) {
	spec := tm(t)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		var errb bytes.Buffer
		done <- run([]string{"-bd", "--once", "-X", spec}, strings.NewReader(""), pw, &errb)
		pw.Close()
	}()
	port, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strings.TrimSpace(port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var got []string
	read := func() string {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, got)
			}
			got = append(got, l)
			if len(l) < 4 || l[3] != '-' {
				return l
			}
		}
	}
	if l := read(); !strings.HasPrefix(l, "220 ") || !strings.HasSuffix(l, "\r\n") {
		t.Fatalf("greeting %q", l)
	}
	for _, step := range []struct{ send, want string }{
		{"EHLO client", "250 "}, {"MAIL FROM:<a@b>", "250 "}, {"RCPT TO:<bad@example.com>", "550 5.1.1"},
		{"RCPT TO:<c@example.com>", "250 "}, {"DATA", "354 "}, {"Subject: x\r\n\r\nbody\r\n.", "250 "}, {"QUIT", "221 "},
	} {
		fmt.Fprintf(c, "%s\r\n", step.send)
		if l := read(); !strings.HasPrefix(l, step.want) {
			t.Fatalf("%s: got %q, want %q", step.send, l, step.want)
		}
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("daemon exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon --once did not exit")
	}
}
