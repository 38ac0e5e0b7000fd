// reload_test.go: SIGHUP through the built binary: a changed limit
// (session_queue) and log level apply to new sessions, a changed listen
// address is warned about and the old one kept, and a broken file keeps
// the running configuration (one error line) and calloutd serving.

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestReloadBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "calloutd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", realpeer.FreePort(t))
	conf := filepath.Join(dir, "calloutd.toml")
	write := func(listen string, queue int, level string) {
		text := fmt.Sprintf("listen = \"inet://%s\"\nlog_level = %q\n[cache]\ntype = \"memory\"\n[limits]\nsession_queue = %d\n", listen, level, queue)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(addr, 2, "info")
	p := realpeer.StartProcess(t, "calloutd", exec.Command(bin, "--stderr", "--config", conf))
	p.WaitReady(t, "tcp:"+addr, 10*time.Second)
	// logged waits for a log line (the pipe may lag the protocol).
	logged := func(line string) bool {
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Output(), line); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				return false
			}
		}
		return true
	}
	hup := func(wantLine string) {
		t.Helper()
		if err := syscall.Kill(p.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !logged(wantLine) {
			t.Fatalf("no %q after SIGHUP:\n%s", wantLine, p.Output())
		}
	}
	// queued says how many of four VRFYs a new session accepts, and runs
	// them (the address has no domain: failure at once, nothing probed).
	queued := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cl, err := callout.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		n := 0
		for i := 0; i < 4; i++ {
			if _, err := cl.Vrfy(ctx, callout.Request{Email: fmt.Sprintf("x%d@", i)}); err == nil {
				n++
			}
		}
		if _, err := cl.Run(ctx, nil); err != nil {
			t.Fatal(err)
		}
		cl.Quit(ctx)
		return n
	}
	if n := queued(); n != 2 {
		t.Fatalf("session_queue 2: %d addresses queued", n)
	}
	if strings.Contains(p.Output(), "level=DEBUG") {
		t.Fatalf("debug lines at log_level info:\n%s", p.Output())
	}

	other := fmt.Sprintf("127.0.0.1:%d", realpeer.FreePort(t))
	write(other, 3, "debug")
	hup("configuration reloaded")
	if !strings.Contains(p.Output(), "reload: listen changed: restart calloutd to apply it") {
		t.Errorf("no warning about the listen address:\n%s", p.Output())
	}
	if n := queued(); n != 3 { // on the old address, still served
		t.Errorf("session_queue 3 after SIGHUP: %d addresses queued", n)
	}
	if !logged("level=DEBUG msg=callout") {
		t.Errorf("log_level debug after SIGHUP: no debug line:\n%s", p.Output())
	}

	os.WriteFile(conf, []byte("listen = [1, 2]\nbogus = true\n[limits]\nsession_queue = 0\n"), 0o644)
	hup("reload failed, keeping the running configuration")
	var errLines []string
	for _, l := range strings.Split(p.Output(), "\n") {
		if strings.Contains(l, "level=ERROR") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || !strings.Contains(errLines[0], "bogus") || !strings.Contains(errLines[0], "session_queue") {
		t.Errorf("want one error line naming every problem, got:\n%s", strings.Join(errLines, "\n"))
	}
	if n := queued(); n != 3 {
		t.Errorf("after a failed reload: %d addresses queued, want the running limit 3", n)
	}
	p.Stop()
	if err := p.ExitErr(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.Output())
	}
}
