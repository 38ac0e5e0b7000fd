// main_test.go: the pmult command: check's exit status, serving a real
// session from a config file, pidfile, SIGTERM drain.

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("listen = [\"inet:7357@127.0.0.1\"]\n[[backend]]\nname = \"a\"\nurl = \"unix:/tmp/a.sock\"\n"), 0o644)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("listen = [\"inet:x\"]\ncontent = \"sideways\"\n[[backend]]\nname = \"a\"\nurl = \"inet:1@h\"\non_failure = \"acept\"\n[[backend]]\nname = \"a\"\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", good}, &out, &errb); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "-c", bad}, &out, &errb); code != 78 {
		t.Fatalf("bad config: exit %d, want 78", code)
	}
	for _, want := range []string{"inet:x", "sideways", "acept", "duplicate", "url"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errb.String())
		}
	}
}

// TestServeAndDrain runs the real binary: a session through it, then
// SIGTERM in the middle of a second session, which must still finish.
func TestServeAndDrain(t *testing.T) {
	dir := t.TempDir()
	bin := buildPmult(t)
	ba := startHeaderMilter(t)
	sock := filepath.Join(dir, "pmult.sock")
	pid := filepath.Join(dir, "pmult.pid")
	cfg := filepath.Join(dir, "pmult.toml")
	host, port, _ := net.SplitHostPort(ba.String())
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = [\"unix:%s\"]\nshutdown_timeout = \"5s\"\n[[backend]]\nname = \"t\"\nurl = \"inet:%s@%s\"\n", sock, port, host)), 0o644)
	mln, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := mln.Addr().String()
	mln.Close()
	cmd := exec.Command(bin, "-c", cfg, "--pidfile", pid, "-x", "--metrics", maddr)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var c net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pmult did not listen: %v\n%s", err, logs.String())
	}
	if b, err := os.ReadFile(pid); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(cmd.Process.Pid) {
		t.Errorf("pidfile: %q %v", b, err)
	}
	eomWant := "hc"
	session := func(c net.Conn, mid func()) {
		t.Helper()
		r := mp.NewReader(c, 1<<20)
		var proto mp.Protocol
		rt := func(code byte, data []byte, want string) {
			t.Helper()
			mp.WritePacket(c, code, data)
			if code != mp.CmdOptNeg && !proto.Replies(code) {
				return // negotiated no reply (e.g. no backends at all)
			}
			var got string
			for {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				p, err := r.ReadPacket()
				if err != nil {
					t.Fatalf("%c: %v\n%s", code, err, logs.String())
				}
				got += string(p.Code)
				if p.Code == mp.RespOptNeg {
					o, _ := mp.ParseOptNeg(p.Data)
					proto = o.Protocol
				}
				if strings.ContainsRune("catrdyO", rune(p.Code)) {
					break
				}
			}
			if got != want {
				t.Fatalf("%c answered %q, want %q", code, got, want)
			}
		}
		rt(mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: 0x1ff, Protocol: 0x1fffff}.Append(nil), "O")
		rt(mp.CmdConnect, mp.Connect{Hostname: "h", Family: 'U'}.Append(nil), "c")
		rt(mp.CmdMail, testmilter.Str("<a@b>"), "c")
		if mid != nil {
			mid()
		}
		rt(mp.CmdRcpt, testmilter.Str("<c@d>"), "c")
		rt(mp.CmdEOB, nil, eomWant)
		mp.WritePacket(c, mp.CmdQuit, nil)
		c.Close()
	}
	session(c, nil)

	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"pmult_sessions_total 1", `pmult_replies_total{stage="eom",verdict="continue"} 1`,
		`pmult_backend_edits_total{backend="t",edit="add_header"} 1`, `pmult_backend_replies_total{backend="t",stage="mail",verdict="continue"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	// SIGHUP with a bad file keeps the running configuration; with a good
	// one (no backends now) new sessions use it.
	os.WriteFile(cfg, []byte("listen = [\"inet:x\"]\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if c, err = net.Dial("unix", sock); err != nil {
		t.Fatal(err)
	}
	session(c, nil)
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen = [\"unix:%s\"]\nshutdown_timeout = \"5s\"\n", sock)), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	eomWant = "c"
	if c, err = net.Dial("unix", sock); err != nil {
		t.Fatal(err)
	}
	session(c, nil)
	for _, want := range []string{"reload failed", "configuration reloaded"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	c2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	session(c2, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		if _, err := net.Dial("unix", sock); err == nil {
			t.Error("still accepting after SIGTERM")
		}
	})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("pmult did not exit after SIGTERM\n%s", logs.String())
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Error("pidfile left behind")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown log:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the child's writer goroutine and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// buildPmult builds the pmult binary once for the package's tests.
func buildPmult(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pmult-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "pmult")
		buildOut, buildErr = exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, buildOut)
	}
	return builtBin
}

// startHeaderMilter starts a test milter that adds "X-Test: yes" at end
// of message, stopped when the test ends.
func startHeaderMilter(t *testing.T) net.Addr {
	t.Helper()
	m := &testmilter.Server{Actions: mp.ActAddHeaders, Handler: func(c *testmilter.Conn, p mp.Packet) []mp.Packet {
		if p.Code == mp.CmdEOB {
			return []mp.Packet{testmilter.Reply(mp.RespAddHeader, testmilter.Str("X-Test", "yes")), {Code: mp.RespContinue}}
		}
		return nil
	}}
	ba, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return ba
}

// check and mta-config relate max_message to the MTA's size limit; check
// refuses a spool_dir that is not a directory.
func TestSizeLimitAdvice(t *testing.T) {
	dir := t.TempDir()
	cfgs := map[string]string{
		"nolimit": "",
		"limit":   "max_message = 1048576\n",
		"baddir":  fmt.Sprintf("spool_dir = %q\n", filepath.Join(dir, "missing")),
	}
	for name, body := range cfgs {
		os.WriteFile(filepath.Join(dir, name+".toml"), []byte(body), 0o644)
	}
	var out, errb bytes.Buffer
	cfg := func(name string) string { return filepath.Join(dir, name+".toml") }
	if code := run([]string{"check", "-c", cfg("nolimit")}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "no limit of pmult's") || !strings.Contains(out.String(), "10240000") {
		t.Errorf("check nolimit: exit %d:\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"check", "-c", cfg("limit")}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "max_message = 1048576: bigger messages get 552 5.3.4") {
		t.Errorf("check limit: exit %d:\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"check", "-c", cfg("baddir")}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), "spool_dir") {
		t.Errorf("check baddir: exit %d:\n%s%s", code, out.String(), errb.String())
	}
	for mta, want := range map[string]string{"postfix": "\nmessage_size_limit = 1048576\n",
		"sendmail": "define(`confMAX_MESSAGE_SIZE', `1048576')dnl"} {
		out.Reset()
		if code := run([]string{"mta-config", mta, "-c", cfg("limit")}, &out, &errb); code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("mta-config %s: exit %d, want %q in:\n%s%s", mta, code, want, out.String(), errb.String())
		}
	}
	out.Reset()
	run([]string{"mta-config", "postfix", "-c", cfg("nolimit")}, &out, &errb)
	if strings.Contains(out.String(), "\nmessage_size_limit") || !strings.Contains(out.String(), "default 10240000") {
		t.Errorf("mta-config postfix without a limit:\n%s", out.String())
	}
}

// An SMTP-only pmult (no milter or MeTA1 front) gets the SMTP front's size
// limit from check, not the note about the MTA's message_size_limit.
func TestSizeLimitAdviceSMTPOnly(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", filepath.Join("..", "..", "examples", "smtp-after-queue.toml")}, &out, &errb); code != 0 {
		t.Fatalf("check: exit %d:\n%s%s", code, out.String(), errb.String())
	}
	if s := out.String(); strings.Contains(s, "no limit of pmult's") || !strings.Contains(s, "[smtp] max_message = 10240000") {
		t.Errorf("check of an SMTP-only configuration:\n%s", s)
	}
}
