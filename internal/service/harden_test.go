// harden_test.go: the unix socket's mode and symlinks, the pidfile and
// symlinks, wildcard warnings.

package service

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mailmux/mailmux/config"
)

// The socket is connectable by others from the moment it has its path, and
// pmult never changes a mode through that path: swapping the socket for a
// symlink right after the bind must leave the symlink's target alone.
func TestUnixSocketModeWithoutChmodThroughPath(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("secret"), 0o600)
	sock := filepath.Join(dir, "pmult.sock")
	var modeAtBind os.FileMode
	afterBindHook = func(path string) {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Errorf("socket not at its path: %v", err)
			return
		}
		modeAtBind = fi.Mode()
		// An attacker who can write the directory swaps the socket.
		os.Remove(path)
		os.Symlink(victim, path)
	}
	defer func() { afterBindHook = nil }()
	ln, err := listen(config.Address{Network: "unix", Addr: sock, Raw: "unix:" + sock}, defaultPerm)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if modeAtBind&os.ModeSocket == 0 || modeAtBind.Perm() != 0o666 {
		t.Errorf("socket mode at its path: %v, want a socket with 0666", modeAtBind)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
		t.Errorf("symlink target's mode changed to %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".pmult-sock-") {
			t.Errorf("private bind directory left behind: %s", e.Name())
		}
	}
}

func TestUnixSocketPathChecks(t *testing.T) {
	dir := t.TempDir()
	addr := func(p string) config.Address { return config.Address{Network: "unix", Addr: p, Raw: "unix:" + p} }
	// A symlink or a plain file is refused, and left as it is.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "link.sock")
	os.Symlink(target, link)
	if _, err := listen(addr(link), defaultPerm); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlink at the socket path: %v", err)
	}
	if _, err := listen(addr(target), defaultPerm); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("file at the socket path: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink touched: %v %v", fi, err)
	}
	// A socket in use is refused; a stale one is replaced.
	sock := filepath.Join(dir, "p.sock")
	ln, err := listen(addr(sock), defaultPerm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listen(addr(sock), defaultPerm); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("socket in use: %v", err)
	}
	ln.Close() // unlink on close is off: the path stays, stale
	ln2, err := listen(addr(sock), defaultPerm)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln2.Close()
	go func() {
		if c, err := ln2.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
}

func TestPidfileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "passwd")
	os.WriteFile(target, []byte("root:x:0:0\n"), 0o644)
	pid := filepath.Join(dir, "pmult.pid")
	os.Symlink(target, pid)
	err := writePidfile(pid, -1, -1)
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("writePidfile through a symlink: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "root:x:0:0\n" {
		t.Fatalf("symlink target overwritten: %q", b)
	}
	// A regular file is written (and truncated).
	plain := filepath.Join(dir, "plain.pid")
	os.WriteFile(plain, []byte("9999999999 old\n"), 0o644)
	if err := writePidfile(plain, -1, -1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(plain); string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Fatalf("pidfile: %q", b)
	}
}

func TestWildcardAndMetricsAddresses(t *testing.T) {
	for in, want := range map[string]string{
		"9100": "127.0.0.1:9100", ":9100": "127.0.0.1:9100", "0.0.0.0:9100": "0.0.0.0:9100",
		"[::]:9100": "[::]:9100", "127.0.0.2:9100": "127.0.0.2:9100", "localhost:9100": "localhost:9100",
	} {
		if got := metricsAddr(in); got != want {
			t.Errorf("metricsAddr(%q) = %q, want %q", in, got, want)
		}
	}
	for addr, want := range map[string]bool{
		"0.0.0.0:1": true, "[::]:1": true, ":1": true, "127.0.0.1:1": false, "[::1]:1": false, "mx.example:1": false,
	} {
		if got := isWildcard(addr); got != want {
			t.Errorf("isWildcard(%q) = %v", addr, got)
		}
	}
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	warnWildcard(log, "pmult", config.Address{Network: "tcp", Addr: "0.0.0.0:7357", Raw: "inet:7357"})
	warnWildcard(log, "pmult", config.Address{Network: "tcp", Addr: "127.0.0.1:7357", Raw: "inet:7357@127.0.0.1"})
	warnWildcard(log, "pmult", config.Address{Network: "unix", Addr: "/run/p.sock", Raw: "unix:/run/p.sock"})
	if n := strings.Count(b.String(), "every address"); n != 1 {
		t.Errorf("%d wildcard warnings, want 1:\n%s", n, b.String())
	}
}

// socket_owner and socket_group are set right after the bind with lchown:
// the socket gets them with its mode; a symlink swapped in for it is
// neither followed nor changed, and listen fails.
func TestUnixSocketOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown to another user")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "p.sock")
	a := config.Address{Network: "unix", Addr: sock, Raw: "unix:" + sock}
	ln, err := listen(a, socketPerm{mode: 0o640, uid: 1, gid: 8})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1 || st.Gid != 8 || fi.Mode().Perm() != 0o640 {
		t.Errorf("socket %v %d:%d, want 0640 1:8", fi.Mode(), st.Uid, st.Gid)
	}
	ln.Close()
	os.Remove(sock)
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, nil, 0o600)
	afterBindHook = func(path string) {
		os.Remove(path)
		os.Symlink(victim, path)
	}
	defer func() { afterBindHook = nil }()
	if _, err := listen(a, socketPerm{mode: 0o640, uid: 1, gid: 8}); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("listen with the socket swapped for a symlink: %v", err)
	}
	vi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if st := vi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("symlink target chowned to %d:%d", st.Uid, st.Gid)
	}
	if li, err := os.Lstat(sock); err != nil {
		t.Fatal(err)
	} else if st := li.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("symlink itself chowned to %d", st.Uid)
	}
}
