package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSysmonEnv(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string // GODEBUG after, "" when unchanged
	}{
		{[]string{"PATH=/bin"}, "GODEBUG=" + sysmonSetting},
		{[]string{"GODEBUG="}, "GODEBUG=" + sysmonSetting},
		{[]string{"GODEBUG=madvdontneed=1"}, "GODEBUG=madvdontneed=1," + sysmonSetting},
		{[]string{"GODEBUG=schedtrace=0"}, ""},
		{[]string{"GODEBUG=gctrace=1,schedtrace=1000"}, ""},
	} {
		out, ok := sysmonEnv(c.in)
		if ok != (c.want != "") {
			t.Errorf("%q: changed %v", c.in, ok)
			continue
		}
		if ok && !slices.Contains(out, c.want) {
			t.Errorf("%q -> %q, want %s", c.in, out, c.want)
		}
	}
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
	for i := 0; i < 200 && !strings.Contains(env, sysmonSetting); i++ {
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ")
		env = string(b)
	}
	if !strings.Contains(env, "GODEBUG="+sysmonSetting) {
		t.Fatalf("the daemon's environment has no %s", sysmonSetting)
	}
}
