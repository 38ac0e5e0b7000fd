package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/gotune"
)

func TestDaemonRun(t *testing.T) {
	for args, want := range map[string]bool{"": true, "run -c x": true, "-c x": true, "check -c x": false, "why Q1": false, "version": false} {
		if got := daemonRun(strings.Fields(args)); got != want {
			t.Errorf("daemonRun(%q) = %v", args, got)
		}
	}
}

// The daemon re-executes itself once with the setting (the runtime reads
// GODEBUG only at start); subcommands do not.
func TestSysmonReexec(t *testing.T) {
	bin := buildPmult(t)
	cmd := exec.Command(bin, "-c", filepath.Join("..", "..", "examples", "demo.toml"), "--url", "inet:127.0.0.1:0")
	cmd.Env = append(os.Environ(), "GODEBUG=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var env string
	for i := 0; i < 200 && !strings.Contains(env, gotune.SysmonSetting); i++ {
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ")
		env = string(b)
	}
	if !strings.Contains(env, "GODEBUG="+gotune.SysmonSetting) {
		t.Fatalf("the daemon's environment has no %s", gotune.SysmonSetting)
	}
}
