// calloutd.go: runs mailfromd's calloutd 8.15 for interoperability tests,
// with a private configuration, state directory, resolver and hosts file.
//
// Facts this relies on (see reference/real-peers.md): calloutd probes port
// 25 only, so the SMTP targets of a test sit on other loopback addresses;
// its MX lookups (adns) read --resolv-conf-file, but its host lookups
// (getaddrinfo) read /etc/resolv.conf and /etc/hosts, so it runs in a
// private mount namespace (unshare -m) where the test's files are
// bind-mounted over those two; forked children lose adns's socket ("Bad
// file descriptor"), so it runs --single-process, one client at a time.

package realpeer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CalloutdOptions configure StartCalloutd.
type CalloutdOptions struct {
	// Nameserver is the IP address (port 53) of the test's DNS server;
	// empty: 127.0.0.1 (nothing answers).
	Nameserver string
	// Hosts are extra /etc/hosts lines.
	Hosts []string
	// Ehlo is ehlo-domain (default "callout.harness.test").
	Ehlo string
	// MailFrom is mail-from-address (default "<>").
	MailFrom string
	// Fork runs calloutd as in production, a process per client, instead
	// of --single-process. Then MX lookups fail (see above), and
	// addresses left when a client quits are probed in the background,
	// which --single-process does not do (it keeps one queue for all
	// clients instead).
	Fork bool
	// HardTimeout, in seconds, is every hard SMTP timeout (default 2): the
	// background re-probes after QUIT must not hold the single process.
	HardTimeout int
}

// Calloutd is a running calloutd.
type Calloutd struct {
	Addr string // "127.0.0.1:PORT"
	Proc *Process
}

// StartCalloutd starts calloutd on a free port of 127.0.0.1 and waits
// until it listens. It is stopped in t.Cleanup.
func StartCalloutd(t testing.TB, o CalloutdOptions) *Calloutd {
	t.Helper()
	Require(t, "calloutd", "unshare")
	bin := mustTool(t, "calloutd")
	dir := Dir(t)
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatalf("realpeer: calloutd: %v", err)
	}
	chownUser(t, state, "mailfromd")
	if o.Ehlo == "" {
		o.Ehlo = "callout.harness.test"
	}
	if o.MailFrom == "" {
		o.MailFrom = "<>"
	}
	if o.HardTimeout <= 0 {
		o.HardTimeout = 2
	}
	if o.Nameserver == "" {
		o.Nameserver = "127.0.0.1"
	}
	port := strconv.Itoa(FreePort(t))
	h := strconv.Itoa(o.HardTimeout)
	conf := fmt.Sprintf(`server { listen inet://127.0.0.1:%s; }
logger stderr;
transcript yes;
ehlo-domain %q;
mail-from-address %q;
state-directory %s;
pidfile %s;
smtp-timeout hard {
  connection %s; initial-response %s; helo %s; mail %s; rcpt %s; rset %s; quit %s;
}
`, port, o.Ehlo, o.MailFrom, state, filepath.Join(state, "calloutd.pid"), h, h, h, h, h, h, h)
	files := map[string]string{
		"calloutd.conf": conf,
		"resolv.conf":   "nameserver " + o.Nameserver + "\noptions timeout:1 attempts:1\n",
		"hosts":         "127.0.0.1 localhost\n",
	}
	for _, l := range o.Hosts {
		files["hosts"] += l + "\n"
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatalf("realpeer: calloutd: %v", err)
		}
	}
	single := "--single-process"
	if o.Fork {
		single = "--foreground"
	}
	script := `mount --bind "$1/resolv.conf" /etc/resolv.conf && mount --bind "$1/hosts" /etc/hosts && exec "$2" --config-file="$1/calloutd.conf" --foreground --stderr "$3" --resolv-conf-file="$1/resolv.conf"`
	cmd := exec.Command(mustTool(t, "unshare"), "-m", "--propagation", "private", "sh", "-c", script, "sh", dir, bin, single)
	cmd.Dir = dir
	p := StartProcess(t, "calloutd", cmd)
	t.Cleanup(func() {
		// calloutd forks helpers for background probes: stop them by PID
		// with their parent.
		kids := childPIDs(p.PID())
		p.Stop()
		for _, k := range kids {
			syscall.Kill(k, syscall.SIGKILL)
		}
	})
	addr := "127.0.0.1:" + port
	p.WaitReady(t, "tcp:"+addr, 15*time.Second)
	return &Calloutd{Addr: addr, Proc: p}
}

// childPIDs returns the processes whose parent is pid (from /proc).
func childPIDs(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}
