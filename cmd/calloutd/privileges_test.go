// privileges_test.go: calloutd started as root with user = "nobody" runs
// as nobody once its socket is bound, and still serves.

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/callout"
	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestBinaryDropsToUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: calloutd switches from root to nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "calloutd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", realpeer.FreePort(t))
	conf := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf("user = \"nobody\"\nlisten = \"inet://%s\"\n[cache]\ntype = \"memory\"\n", addr)), 0o644)
	cmd := exec.Command(bin, "--stderr", "--config", conf)
	p := realpeer.StartProcess(t, "calloutd", cmd)
	p.WaitReady(t, "tcp:"+addr, 10*time.Second)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("Uid:\t%s\t%s\t%s\t%s\n", nobody.Uid, nobody.Uid, nobody.Uid, nobody.Uid)
	if !strings.Contains(string(b), want) {
		t.Errorf("calloutd's ids, want %q:\n%s", want, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := callout.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl.Quit(ctx)
	p.Stop()
	if err := p.ExitErr(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, p.Output())
	}
	if !strings.Contains(p.Output(), "running as") {
		t.Errorf("no log line of the switch:\n%s", p.Output())
	}
}
