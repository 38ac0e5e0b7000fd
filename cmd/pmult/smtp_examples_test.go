// smtp_examples_test.go: examples/smtp-before-queue.toml and
// examples/smtp-after-queue.toml: the MTA lines their comments quote are
// what `pmult mta-config` prints for them, and the binary serves the
// after-queue one (its addresses swapped for test ports).

package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailmux/mailmux/config"
)

// quoted returns the comment blocks of an example that follow a line
// ending in "`pmult mta-config MTA -c" ... "prints:", uncommented: the
// lines after the "#" line that ends the sentence, up to the next "#"
// line.
func quoted(t *testing.T, file, mta string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if !strings.Contains(l, "`pmult mta-config "+mta+" -c") {
			continue
		}
		j := i
		for j < len(lines) && !strings.HasSuffix(lines[j], "prints:") {
			j++
		}
		if j+1 >= len(lines) || lines[j+1] != "#" {
			t.Fatalf("%s: no quoted %s output after line %d", file, mta, i+1)
		}
		var out strings.Builder
		for _, q := range lines[j+2:] {
			if q == "#" || !strings.HasPrefix(q, "# ") {
				break
			}
			out.WriteString(strings.TrimPrefix(q, "# ") + "\n")
		}
		return out.String()
	}
	t.Fatalf("%s: no `pmult mta-config %s -c` comment", file, mta)
	return ""
}

// TestSMTPExamples checks that each SMTP-front example has the mode its
// name says and quotes, in its comment, exactly the lines `pmult
// mta-config` prints for it (Postfix for both, Exim for the after-queue
// one).
func TestSMTPExamples(t *testing.T) {
	for _, tc := range []struct {
		file, mode string
		mtas       []string
	}{
		{"smtp-before-queue.toml", "before", []string{"postfix"}},
		{"smtp-after-queue.toml", "after", []string{"postfix", "exim"}},
	} {
		f := filepath.Join("../../examples", tc.file)
		cfg, err := config.Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if cfg.Smtp.Mode != tc.mode || len(cfg.Smtp.ListenAddrs) == 0 || len(cfg.Milter.ListenAddrs) != 0 {
			t.Errorf("%s: mode %q, %d SMTP and %d milter listeners; want mode %q, an SMTP-front-only pmult",
				f, cfg.Smtp.Mode, len(cfg.Smtp.ListenAddrs), len(cfg.Milter.ListenAddrs), tc.mode)
		}
		for _, mta := range tc.mtas {
			var out, errb bytes.Buffer
			if code := run([]string{"mta-config", mta, "-c", f}, &out, &errb); code != 0 {
				t.Fatalf("mta-config %s -c %s: exit %d\n%s", mta, f, code, errb.String())
			}
			want := strings.TrimPrefix(out.String(), "\n")
			if got := quoted(t, f, mta); got != want {
				t.Errorf("%s quotes for `pmult mta-config %s`:\n%s\nit prints:\n%s", f, mta, got, want)
			}
		}
	}
}

// TestServeSMTPAfterQueueExample runs the binary on
// examples/smtp-after-queue.toml with its listener, next hop and both
// backends moved to test ports (every backend is a milter adding
// "X-Test: yes"): a message is filtered and relayed with the loop marker;
// a message already carrying it is relayed unfiltered.
func TestServeSMTPAfterQueueExample(t *testing.T) {
	b, err := os.ReadFile("../../examples/smtp-after-queue.toml")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildPmult(t)
	ba := startHeaderMilter(t)
	sk := &hopSink{got: make(chan struct{}, 4)}
	hs := gosmtp.NewServer(sk)
	hs.Domain = "hop.test"
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(hln)
	defer hs.Close()
	front := freePort(t)
	text := string(b)
	for _, r := range [][2]string{
		{`listen = ["in=inet:127.0.0.1:10025"]`, fmt.Sprintf(`listen = ["in=inet:%s"]`, front)},
		{`next_hop = "inet:127.0.0.1:10026"`, fmt.Sprintf(`next_hop = "inet:%s"`, hln.Addr())},
		{`address = "inet:8891@127.0.0.1"`, fmt.Sprintf(`address = "inet:%s"`, ba)},
		{`address = "inet://127.0.0.1:11332"`, fmt.Sprintf(`address = "inet:%s"`, ba)},
		{`shutdown_timeout = "30s"`, `shutdown_timeout = "5s"`},
	} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("examples/smtp-after-queue.toml has no %s", r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	cfg := filepath.Join(t.TempDir(), "pmult.toml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfg)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	send := func(msg string) string {
		t.Helper()
		var c *gosmtp.Client
		for i := 0; i < 100; i++ {
			if c, err = gosmtp.Dial(front); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("dial: %v\n%s", err, logs.String())
		}
		if err := c.SendMail("a@example.org", []string{"b@example.com"}, strings.NewReader(msg)); err != nil {
			t.Fatalf("send: %v\n%s", err, logs.String())
		}
		c.Quit()
		<-sk.got
		sk.mu.Lock()
		defer sk.mu.Unlock()
		return sk.msgs[len(sk.msgs)-1]
	}
	if got := send("Subject: t\r\n\r\nhi\r\n"); !strings.Contains(got, "X-Test: yes\r\n") ||
		!strings.Contains(got, "X-Mailmux-Filtered: mx.example.org\r\n") {
		t.Errorf("relayed %q: want the backends' X-Test and the loop marker", got)
	}
	marked := "X-Mailmux-Filtered: mx.example.org\r\nSubject: again\r\n\r\nhi\r\n"
	// Unfiltered: no backend's header, and its one marker (not a second).
	if got := send(marked); strings.Contains(got, "X-Test") || !strings.HasPrefix(got, "X-Mailmux-Filtered: mx.example.org\r\nSubject: again\r\n") ||
		strings.Count(got, "X-Mailmux-Filtered:") != 1 || !strings.HasSuffix(got, "\r\n\r\nhi\r\n") {
		t.Errorf("a message with the loop marker was relayed as %q, want %q unfiltered", got, marked)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
}
