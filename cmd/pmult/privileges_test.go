// privileges_test.go: the binary started as root with user = "nobody":
// the sockets are created with socket_owner, socket_group and
// socket_mode, every thread of the process runs as nobody after binding,
// the pidfile stays usable; root without user is warned about.

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
)

// startLogged starts bin with args, its stderr in the returned buffer,
// and waits for the "listening" line.
func startLogged(t *testing.T, bin string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "msg=listening"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("pmult did not listen:\n%s", logs.String())
		}
	}
	return cmd, logs
}

// procIDs returns the Uid, Gid and Groups lines of every thread of pid.
func procIDs(t *testing.T, pid int) []string {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var lines []string
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") || strings.HasPrefix(l, "Groups:") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return lines
}

func TestPrivilegeDropAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: pmult switches from root to nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no nobody account: %v", err)
	}
	owner, err := user.Lookup("daemon")
	if err != nil {
		t.Fatalf("no daemon account: %v", err)
	}
	mailGroup, err := user.LookupGroup("mail")
	if err != nil {
		t.Fatalf("no mail group: %v", err)
	}
	bin := buildPmult(t)
	dir := t.TempDir()
	// Root's directories: nobody may read the configuration, not write.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "pmult.sock")
	pid := filepath.Join(dir, "pmult.pid")
	cfg := filepath.Join(dir, "pmult.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`user = "nobody"
socket_owner = "daemon"
socket_group = "mail"
socket_mode = "0660"
pidfile = %q
[milter]
listen = ["unix:%s"]
`, pid, sock)), 0o644)
	cmd, logs := startLogged(t, bin, "-c", cfg)

	// The socket, from its creation: daemon:mail 0660.
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || strconv.Itoa(int(st.Uid)) != owner.Uid || strconv.Itoa(int(st.Gid)) != mailGroup.Gid {
		t.Errorf("socket %v uid %d gid %d, want 0660 %s:%s", fi.Mode(), st.Uid, st.Gid, owner.Uid, mailGroup.Gid)
	}
	// Every thread runs as nobody (real, effective, saved, filesystem).
	want := []string{
		fmt.Sprintf("Uid: %s %s %s %s", nobody.Uid, nobody.Uid, nobody.Uid, nobody.Uid),
		fmt.Sprintf("Gid: %s %s %s %s", nobody.Gid, nobody.Gid, nobody.Gid, nobody.Gid),
	}
	lines := procIDs(t, cmd.Process.Pid)
	for _, l := range lines {
		if strings.HasPrefix(l, "Uid:") && l != want[0] || strings.HasPrefix(l, "Gid:") && l != want[1] ||
			strings.HasPrefix(l, "Groups:") && strings.Contains(" "+l+" ", " 0 ") {
			t.Errorf("thread ids %q, want %q", l, want)
		}
	}
	// The pidfile was written before the switch and belongs to nobody.
	if fi, err := os.Stat(pid); err != nil || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != nobody.Uid {
		t.Errorf("pidfile: %v %v", fi, err)
	}
	// It serves: root may connect (the MTA would be in group mail).
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mp.WritePacket(c, mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: 0x1ff, Protocol: 0x1fffff}.Append(nil))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := mp.NewReader(c, 1<<20).ReadPacket(); err != nil || p.Code != mp.RespOptNeg {
		t.Fatalf("negotiation through the socket: %v %v\n%s", p, err, logs.String())
	}
	c.Close()
	for _, l := range []string{"running as", "user=nobody", "pidfile's directory is not writable"} {
		if !strings.Contains(logs.String(), l) {
			t.Errorf("log lacks %q:\n%s", l, logs.String())
		}
	}
	if strings.Contains(logs.String(), "running as root") || strings.Contains(logs.String(), "not readable") {
		t.Errorf("root warning with user set, or configuration unreadable:\n%s", logs.String())
	}
	// At exit, nobody cannot remove the pidfile from root's directory: it
	// is emptied, no stale process id is left.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if b, err := os.ReadFile(pid); err != nil || len(b) != 0 {
		t.Errorf("pidfile after exit: %q %v\n%s", b, err, logs.String())
	}
}

func TestRootWithoutUserWarns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := buildPmult(t)
	_, logs := startLogged(t, bin, "--url", "inet:127.0.0.1:0")
	if !strings.Contains(logs.String(), "running as root: set user") {
		t.Errorf("no warning for root without user:\n%s", logs.String())
	}
}

// A user that does not exist on the host is a configuration error, for
// pmult check and at start, before any socket is created.
func TestUnknownUser(t *testing.T) {
	bin := buildPmult(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "p.sock")
	cfg := filepath.Join(dir, "pmult.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("user = \"no-such-user-pmult\"\nsocket_group = \"no-such-group-pmult\"\n[milter]\nlisten = \"unix:%s\"\n", sock)), 0o644)
	for _, args := range [][]string{{"check", "-c", cfg}, {"-c", cfg}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 78 {
			t.Errorf("%v: %v, want exit 78\n%s", args, err, out)
		}
		for _, want := range []string{`user: no account `, `no-such-user-pmult`, `socket_group: no group `, `no-such-group-pmult`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Error("socket created despite the bad configuration")
	}
}
