package main

import (
	"io"
	"net/http"
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

// GOMAXPROCS follows the load (internal/gotune.Procs): an idle daemon
// comes down to one processor (seen in /metrics); one started with
// GOMAXPROCS in its environment keeps it.
func TestProcsFollowLoad(t *testing.T) {
	bin := buildPmult(t)
	start := func(env ...string) (metrics string) {
		addr := freePort(t)
		cmd := exec.Command(bin, "--url", "inet:127.0.0.1:0", "--metrics", addr)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOMAXPROCS=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return "http://" + addr + "/metrics"
	}
	procs := func(url string) string {
		resp, err := http.Get(url)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "go_sched_gomaxprocs_threads "); ok {
				return v
			}
		}
		return ""
	}
	adaptive := start()
	fixed := start("GOMAXPROCS=2")
	var got string
	for deadline := time.Now().Add(30 * time.Second); got != "1" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = procs(adaptive)
	}
	if got != "1" {
		t.Fatalf("idle daemon: GOMAXPROCS %q, want 1", got)
	}
	if got := procs(fixed); got != "2" {
		t.Errorf("daemon started with GOMAXPROCS=2: GOMAXPROCS %q, want 2 kept", got)
	}
}
