// smtp_test.go: the SMTP front in the binary (a milter backend, a go-smtp
// next hop, reload and stop), and its mta-config and check output.

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

type hopSink struct {
	mu   sync.Mutex
	msgs []string
	got  chan struct{}
}

type hopSession struct{ s *hopSink }

func (s *hopSink) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) { return hopSession{s}, nil }
func (hopSession) Reset()                                            {}
func (hopSession) Logout() error                                     { return nil }
func (hopSession) Mail(string, *gosmtp.MailOptions) error            { return nil }
func (hopSession) Rcpt(string, *gosmtp.RcptOptions) error            { return nil }
func (h hopSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	h.s.mu.Lock()
	h.s.msgs = append(h.s.msgs, string(b))
	h.s.mu.Unlock()
	h.s.got <- struct{}{}
	return nil
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeSMTPFront(t *testing.T) {
	dir := t.TempDir()
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
	host, port, _ := net.SplitHostPort(ba.String())
	cfg := filepath.Join(dir, "pmult.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`shutdown_timeout = "5s"
[milter]
listen = []
[smtp]
listen = ["in=inet:%s"]
next_hop = "inet:%s"
hostname = "pmult.test"
[[backend]]
name = "t"
url = "inet:%s@%s"
`, front, hln.Addr(), port, host)), 0o644)
	cmd := exec.Command(bin, "-c", cfg)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
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
	if err := c.SendMail("a@example.org", []string{"b@example.com"}, strings.NewReader("Subject: t\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("send: %v\n%s", err, logs.String())
	}
	c.Quit()
	<-sk.got
	sk.mu.Lock()
	msg := sk.msgs[0]
	sk.mu.Unlock()
	if want := "Subject: t\r\nX-Test: yes\r\nX-Mailmux-Filtered: pmult.test\r\n\r\nhi\r\n"; msg != want {
		t.Errorf("relayed %q, want %q", msg, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "listening for SMTP") {
		t.Errorf("no listening line:\n%s", logs.String())
	}
}

func TestMTAConfigSMTPFront(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "pmult.toml")
	for _, tc := range []struct {
		mta, mode string
		want      []string
	}{
		{"postfix", "before", []string{"  -o smtpd_proxy_filter=127.0.0.1:10025\n", "127.0.0.1:10026 inet n", "no_milters"}},
		{"postfix", "after", []string{"content_filter = pmult:[127.0.0.1]:10025\n", "pmult     unix  -       -       n       -       10      smtp\n",
			"smtp_send_xforward_command=yes", "127.0.0.1:10026 inet n"}},
		{"exim", "after", []string{"pmult_filter:\n  driver = manualroute\n", "condition = ${if !={$received_port}{10026}}",
			"transport = pmult_smtp", "pmult_smtp:\n  driver = smtp\n  port = 10025\n", "daemon_smtp_ports = 25 : 10026"}},
	} {
		os.WriteFile(cfg, []byte(fmt.Sprintf("[milter]\nlisten = []\n[smtp]\nlisten = [\"inet:127.0.0.1:10025\"]\nmode = %q\nnext_hop = \"inet:127.0.0.1:10026\"\ntrusted = [\"127.0.0.1\"]\n", tc.mode)), 0o644)
		var out, errb bytes.Buffer
		if code := run([]string{"mta-config", tc.mta, "-c", cfg}, &out, &errb); code != 0 {
			t.Fatalf("%s %s: exit %d: %s", tc.mta, tc.mode, code, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s %s: output lacks %q:\n%s", tc.mta, tc.mode, w, out.String())
			}
		}
		if strings.Contains(out.String(), "smtpd_milters") {
			t.Errorf("%s %s: milter lines for an SMTP-only pmult:\n%s", tc.mta, tc.mode, out.String())
		}
	}
	// A next hop on a non-loopback address: pmult connects to it from
	// that address, which the reinjection smtpd must trust (relaying and
	// XFORWARD), else it refuses every relayed recipient.
	os.WriteFile(cfg, []byte("[milter]\nlisten = []\n[smtp]\nlisten = [\"inet:192.0.2.7:10025\"]\nnext_hop = \"inet:192.0.2.7:10026\"\ntrusted = [\"192.0.2.7\"]\n"), 0o644)
	var mc bytes.Buffer
	if code := run([]string{"mta-config", "postfix", "-c", cfg}, &mc, io.Discard); code != 0 {
		t.Fatalf("mta-config postfix, next hop 192.0.2.7: exit %d", code)
	}
	for _, w := range []string{"  -o mynetworks=127.0.0.0/8,192.0.2.7/32\n", "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8,192.0.2.7/32\n"} {
		if !strings.Contains(mc.String(), w) {
			t.Errorf("next hop 192.0.2.7: output lacks %q:\n%s", w, mc.String())
		}
	}
	var out, errb bytes.Buffer
	os.WriteFile(cfg, []byte("[milter]\nlisten = []\n[smtp]\nlisten = [\"in=inet:127.0.0.1:10025\"]\nnext_hop = \"inet:127.0.0.1:10026\"\n"), 0o644)
	if code := run([]string{"check", "-c", cfg}, &out, &errb); code != 0 {
		t.Fatalf("check: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "SMTP front (mode before): listen in=inet:127.0.0.1:10025; next hop inet:127.0.0.1:10026") ||
		!strings.Contains(errb.String(), "[smtp] trusted is empty") {
		t.Errorf("check output:\n%s\n%s", out.String(), errb.String())
	}
}
