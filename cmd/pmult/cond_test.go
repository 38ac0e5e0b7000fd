// cond_test.go: mta-config postfix prints the master.cf override of each
// named listener (issue 11), and check reports bad conditions (exit 78).

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
)

func TestMTAConfigListeners(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pmult.toml")
	os.WriteFile(p, []byte(`[milter]
listen = ["inbound=inet:127.0.0.1:7001", "submission=inet:127.0.0.1:7002"]
[[backend]]
name = "a"
address = "inet:1@localhost"
[backend.if]
listener = "inbound"
`), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"mta-config", "postfix", "-c", p}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"listener inbound (inet:127.0.0.1:7001)", "-o smtpd_milters=inet:127.0.0.1:7001",
		"listener submission (inet:127.0.0.1:7002)", "-o smtpd_milters=inet:127.0.0.1:7002"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
}

func TestCheckBadCondition(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pmult.toml")
	os.WriteFile(p, []byte(`[[backend]]
name = "a"
address = "inet:1@localhost"
[backend.if]
client_file = "`+filepath.Join(dir, "nets")+`"
helo_regex = "("
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
match = { client_file = "`+filepath.Join(dir, "nets")+`" }
action = "rejct"
`), 0o644)
	var out, errb bytes.Buffer
	code := run([]string{"check", "-c", p}, &out, &errb)
	all := out.String() + errb.String()
	if code != exitConfig || !strings.Contains(all, `backend[0] "a": if.client_file: open `) ||
		!strings.Contains(all, `backend[0] "a": if.helo_regex: bad regular expression`) ||
		!strings.Contains(all, `backend[1] "rules": rule[0].match.client_file: open `) ||
		!strings.Contains(all, `backend[1] "rules": rule[0].action: `) {
		t.Errorf("exit %d:\n%s", code, all)
	}
}

// The rule filter's list files load at start and again at SIGHUP; a bad
// file fails the reload with its file and line, and the running rules
// stay.
func TestFilterListReload(t *testing.T) {
	dir := t.TempDir()
	bin := buildPmult(t)
	sock := filepath.Join(dir, "pmult.sock")
	nets := filepath.Join(dir, "nets")
	cfg := filepath.Join(dir, "pmult.toml")
	os.WriteFile(nets, []byte("# blocked\n198.51.100.0/24\n"), 0o644)
	os.WriteFile(cfg, []byte(fmt.Sprintf(`shutdown_timeout = "5s"
[milter]
listen = ["unix:%s"]
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
match = { client_file = %q }
action = "reject"
`, sock, nets)), 0o644)
	cmd := exec.Command(bin, "-c", cfg)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitLog := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q:\n%s", want, logs.String())
			}
		}
	}
	waitLog("listening")
	connect := func() string {
		t.Helper()
		m := dialMTA(t, sock, logs)
		defer m.c.Close()
		m.rt(mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: 0x1ff, Protocol: 0x1fffff}.Append(nil))
		return m.rt(mp.CmdConnect, mp.Connect{Hostname: "h", Family: '4', Port: 25, Address: "192.0.2.1"}.Append(nil))
	}
	if got := connect(); got != "c" {
		t.Errorf("192.0.2.1 not listed: %q, want c", got)
	}
	os.WriteFile(nets, []byte("192.0.2.0/24\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("configuration reloaded")
	if got := connect(); got != "y" {
		t.Errorf("192.0.2.1 listed after SIGHUP: %q, want y (reply 550 5.7.1)", got)
	}
	os.WriteFile(nets, []byte("192.0.2.0/24\nnot-a-network\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("reload failed")
	if !strings.Contains(logs.String(), nets+`:2: \"not-a-network\": not an address or CIDR`) {
		t.Errorf("the reload error does not name the file and line:\n%s", logs.String())
	}
	if got := connect(); got != "y" {
		t.Errorf("after a failed reload: %q, want y (the running rules)", got)
	}
}
