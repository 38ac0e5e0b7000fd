// install_test.go: make install into a temporary root, and the Debian
// package built offline, installed with dpkg, checked, started, connected
// to, and purged.

package dist

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mp "github.com/mailmux/mailmux/milterproto"
)

// repoRoot is the tree's top directory (this package is dist/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestMakeInstall(t *testing.T) {
	root := repoRoot(t)
	bin := t.TempDir()
	dest := t.TempDir()
	make := func(prefix string) {
		run(t, root, nil, "make", "-s", "install", "BIN="+bin, "PREFIX="+prefix, "DESTDIR="+dest)
	}
	make("/usr")
	for f, mode := range map[string]os.FileMode{
		"usr/sbin/pmult": 0o755, "usr/sbin/calloutd": 0o755, "usr/bin/mtasim": 0o755,
		"usr/share/man/man8/pmult.8": 0o644, "usr/share/man/man8/calloutd.8": 0o644, "usr/share/man/man1/mtasim.1": 0o644,
		"usr/lib/systemd/system/pmult.service": 0o644, "usr/lib/systemd/system/calloutd.service": 0o644,
		"etc/pmult/pmult.toml": 0o644, "etc/pmult/calloutd.toml": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dest, f))
		if err != nil {
			t.Errorf("not installed: %v", err)
		} else if fi.Mode().Perm() != mode || !fi.Mode().IsRegular() {
			t.Errorf("%s: mode %v, want %v", f, fi.Mode(), mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/pmult.service"))
	for _, want := range []string{"ExecStart=/usr/sbin/pmult -c /etc/pmult/pmult.toml\n", "ExecReload=/bin/kill -HUP $MAINPID\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "ProtectHome=yes\n", "PrivateTmp=yes\n", "RuntimeDirectory=pmult\n", "Restart=on-failure\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("pmult.service lacks %q", want)
		}
	}
	cunit, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/calloutd.service"))
	for _, want := range []string{"ExecStart=/usr/sbin/calloutd -c /etc/pmult/calloutd.toml\n", "ExecReload=/bin/kill -HUP $MAINPID\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n"} {
		if !bytes.Contains(cunit, []byte(want)) {
			t.Errorf("calloutd.service lacks %q", want)
		}
	}
	// The installed binary checks the installed configuration (its spool
	// directory aside, which the package creates).
	out, err := exec.Command(filepath.Join(dest, "usr/sbin/pmult"), "check", "-c", filepath.Join(dest, "etc/pmult/pmult.toml")).CombinedOutput()
	if !strings.Contains(string(out), "spool_dir") || strings.Contains(string(out), "error(s)") {
		t.Errorf("pmult check of the installed configuration: %v\n%s", err, out)
	}
	run(t, root, nil, filepath.Join(dest, "usr/sbin/calloutd"), "--config-lint", "-c", filepath.Join(dest, "etc/pmult/calloutd.toml"))

	// A second install keeps an edited configuration.
	conf := filepath.Join(dest, "etc/pmult/pmult.toml")
	os.WriteFile(conf, []byte("# mine\n"), 0o640)
	make("/usr")
	if b, _ := os.ReadFile(conf); string(b) != "# mine\n" {
		t.Errorf("make install overwrote the configuration: %q", b)
	}
	// Another prefix: the units and man pages name its paths.
	make("/usr/local")
	unit, err = os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/pmult.service"))
	if err != nil || !bytes.Contains(unit, []byte("ExecStart=/usr/local/sbin/pmult -c /usr/local/etc/pmult/pmult.toml\n")) {
		t.Errorf("PREFIX=/usr/local unit: %v\n%s", err, unit)
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/local/etc/pmult/pmult.toml")); err != nil {
		t.Errorf("PREFIX=/usr/local configuration: %v", err)
	}
}

// syncBuffer collects a child's output for the test to read.
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

// waitFor polls cond until it holds (up to 10 s).
func waitFor(t *testing.T, what string, cond func() bool, logs *syncBuffer) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s\n%s", what, logs.String())
		}
	}
}

// The .deb builds from the tree without network, installs on this Debian
// machine (root, disposable), passes pmult check, starts as the pmult
// user like its unit and serves, reloads, stops; purging it leaves nothing.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: dpkg -i into this machine")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "adduser"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: this test needs a Debian system", tool)
		}
	}
	if s := debStatus(); s != "" {
		t.Fatalf("mailmux is on this machine already (%s): not touching it", s)
	}
	if _, err := os.Lstat("/run/pmult"); err == nil {
		t.Fatal("/run/pmult exists: another pmult is installed or running")
	}
	if _, err := user.Lookup("pmult"); err == nil {
		t.Fatal("a pmult account exists already: not touching it")
	}
	root := repoRoot(t)
	out := t.TempDir()
	deb := strings.TrimSpace(run(t, root, nil, "scripts/build-deb.sh", out))
	deb = lastLine(deb)
	t.Cleanup(func() {
		if b, err := exec.Command("dpkg", "--purge", "mailmux").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, b)
		}
		os.RemoveAll("/run/pmult")
		if s := debStatus(); s != "" {
			t.Errorf("still on the machine after purge: %s", s)
		}
		if _, err := user.Lookup("pmult"); err == nil {
			t.Error("pmult user left after purge")
		}
		for _, p := range []string{"/etc/pmult", "/var/spool/pmult", "/usr/sbin/pmult", "/lib/systemd/system/pmult.service"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s left after purge", p)
			}
		}
	})
	run(t, root, nil, "dpkg", "-i", deb)

	// The user, the spool directory, the configuration readable by pmult
	// only through its group, conffiles.
	u, err := user.Lookup("pmult")
	if err != nil {
		t.Fatalf("postinst created no pmult user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	owned := func(p string, uid, gid int, mode os.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			return
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", p, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
		}
	}
	owned("/var/spool/pmult", uid, gid, 0o750)
	owned("/etc/pmult/pmult.toml", 0, gid, 0o640)
	conff := run(t, root, nil, "dpkg-query", "-W", "-f=${Conffiles}", "mailmux")
	for _, f := range []string{"/etc/pmult/pmult.toml", "/etc/pmult/calloutd.toml"} {
		if !strings.Contains(conff, f) {
			t.Errorf("conffiles lack %s:\n%s", f, conff)
		}
	}
	// mailfromd's package has calloutd and mtasim: the package's are
	// named mailmux-calloutd and mailmux-mtasim.
	for _, f := range []string{"/usr/bin/mailmux-mtasim", "/usr/sbin/mailmux-calloutd", "/usr/share/man/man8/pmult.8.gz",
		"/usr/share/man/man1/mailmux-mtasim.1.gz", "/usr/share/man/man8/mailmux-calloutd.8.gz", "/lib/systemd/system/calloutd.service"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if path, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not found: not verifying the units (one check skipped)")
	} else {
		out := run(t, root, nil, path, "verify", "/lib/systemd/system/pmult.service", "/lib/systemd/system/calloutd.service")
		if strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify complains:\n%s", out)
		}
	}

	// pmult check passes on the installed configuration.
	if got := run(t, root, nil, "/usr/sbin/pmult", "check", "-c", "/etc/pmult/pmult.toml"); !strings.Contains(got, "/etc/pmult/pmult.toml: OK") {
		t.Errorf("pmult check: %s", got)
	}
	run(t, root, nil, "/usr/sbin/mailmux-calloutd", "--config-lint", "-c", "/etc/pmult/calloutd.toml")
	run(t, root, nil, "/usr/bin/mailmux-mtasim", "--version")

	// Started as its unit starts it: user pmult, /run/pmult made for it
	// (RuntimeDirectory=pmult, 0755).
	if err := os.Mkdir("/run/pmult", 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown("/run/pmult", uid, gid)
	logs := &syncBuffer{}
	cmd := exec.Command("/usr/sbin/pmult", "-c", "/etc/pmult/pmult.toml")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitFor(t, "listening", func() bool { return strings.Contains(logs.String(), "msg=listening") }, logs)
	owned("/run/pmult/pmult.sock", uid, gid, 0o666)
	c, err := net.Dial("unix", "/run/pmult/pmult.sock")
	if err != nil {
		t.Fatal(err)
	}
	mp.WritePacket(c, mp.CmdOptNeg, mp.OptNeg{Version: 6, Actions: 0x1ff, Protocol: 0x1fffff}.Append(nil))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := mp.NewReader(c, 1<<20).ReadPacket(); err != nil || p.Code != mp.RespOptNeg {
		t.Fatalf("negotiation with the installed pmult: %v %v\n%s", p, err, logs.String())
	}
	c.Close()
	// systemctl reload: SIGHUP, the configuration read as pmult.
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload", func() bool { return strings.Contains(logs.String(), "configuration reloaded") }, logs)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pmult exit: %v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors in the log:\n%s", logs.String())
	}

	// Started as root (another init system) with user = "pmult": the
	// socket is pmult's with socket_mode, the process runs as pmult, the
	// pidfile in pmult's /run/pmult is removed at exit.
	conf := filepath.Join(t.TempDir(), "root.toml")
	os.WriteFile(conf, []byte(`user = "pmult"
socket_mode = "0660"
pidfile = "/run/pmult/pmult.pid"
spool_dir = "/var/spool/pmult"
[milter]
listen = ["unix:/run/pmult/root.sock"]
`), 0o644)
	logs = &syncBuffer{}
	cmd = exec.Command("/usr/sbin/pmult", "-c", conf)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "listening as root", func() bool { return strings.Contains(logs.String(), "msg=listening") }, logs)
	owned("/run/pmult/root.sock", uid, gid, 0o660)
	owned("/run/pmult/pmult.pid", uid, gid, 0o644)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid); err != nil || !strings.Contains(string(status), want) {
		t.Errorf("pmult started as root: want %q in\n%s", want, status)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pmult exit: %v\n%s", err, logs.String())
	}
	if _, err := os.Lstat("/run/pmult/pmult.pid"); err == nil {
		t.Errorf("pidfile left at exit:\n%s", logs.String())
	}
}

// debStatus is the dpkg status of the mailmux package, "" when it is
// not on the machine at all (never installed, or purged).
func debStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "mailmux").Output()
	if s := strings.TrimSpace(string(out)); err == nil && !strings.HasSuffix(s, "not-installed") {
		return s
	}
	return ""
}

// lastLine is the last line of s (build-deb.sh prints the .deb's path last).
func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
