// exim.go: a private Exim 4 daemon for one test, run beside the system's
// Postfix. Debian's exim4-daemon-light is not installed (it would replace
// Postfix as the system MTA): it is downloaded once with "apt-get
// download", unpacked with "dpkg -x" into a per-machine cache
// (EximCacheDir) and run from there with a private configuration, spool
// and log directory on loopback. The binary looks up its compiled-in user
// Debian-exim at start: it runs in a mount namespace of its own where a
// private copy of /etc/passwd and /etc/group (the system's plus that user,
// mapped to nobody) is bind-mounted over the system's files, which stay
// untouched.
//
// The instance has two SMTP ports: mail received on Port is queued and
// delivered over SMTP to EximOptions.Next (pmult's SMTP front, after the
// queue), mail received on ReturnPort (what the front relays back) or made
// by Exim itself (bounces) is delivered into a maildir, one file per
// recipient with Return-path: and Envelope-to:, read with Deliveries and
// WaitDelivered.

package realpeer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EximCacheDir holds the unpacked exim4-daemon-light package, one
// directory per version, usable once it holds a READY file.
// scripts/install-test-deps.sh prepares it too.
const EximCacheDir = "/var/tmp/mailmux-exim"

const (
	eximPackage = "exim4-daemon-light"
	eximBinRel  = "usr/sbin/exim4"
	eximUser    = "Debian-exim" // compiled into Debian's binary
)

// EximOptions configures StartExim.
type EximOptions struct {
	// Next is the "HOST:PORT" mail received on Port is delivered to over
	// SMTP (pmult's SMTP front). Empty: Port delivers locally as well.
	Next string
	// ReturnPort is the port of the second SMTP service (the next hop for
	// pmult's front); 0 takes a free one.
	ReturnPort int
	// ExtraMain are more lines for the main section of the configuration
	// (after the generated ones; Exim takes the last setting).
	ExtraMain []string
	// ExtraTransport are more option lines for the SMTP transport to Next
	// (for example "hosts_try_chunking = *").
	ExtraTransport []string
}

// Exim is a running private Exim daemon (exim -bdf -q1s).
type Exim struct {
	Dir        string // private directory: exim.conf, spool/, log/, out/
	Port       int    // SMTP on 127.0.0.1: queued, delivered to Next
	ReturnPort int    // SMTP on 127.0.0.1: delivered into out/
	Root       string // the unpacked package (in EximCacheDir)

	proc *Process
	mu   sync.Mutex
	seen map[string]bool // delivery files already returned
}

// StartExim writes a private configuration into a fresh Dir and runs the
// daemon in the foreground (a child of the test) with a queue run every
// second, retrying a deferred delivery at every run (retry rule
// F,2h,1s), and waits until both ports listen. The daemon is stopped in
// t.Cleanup. The first use on a machine downloads the package; later
// ones start in a few milliseconds.
func StartExim(t testing.TB, opt EximOptions) *Exim {
	t.Helper()
	Require(t, "exim") // the failure says what to install
	root, err := eximRoot()
	if err != nil {
		t.Fatalf("realpeer: exim: %v\nPrepare it (as root) with: sh %s", err, InstallScript)
	}
	dir := Dir(t)
	ex := &Exim{Dir: dir, Port: FreePort(t), ReturnPort: opt.ReturnPort, Root: root, seen: map[string]bool{}}
	if ex.ReturnPort == 0 {
		ex.ReturnPort = FreePort(t)
	}
	for _, d := range []string{"spool", "log", "out"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("realpeer: exim: %v", err)
		}
		chownUser(t, filepath.Join(dir, d), "nobody")
	}
	writeEximPasswd(t, dir)

	route := fmt.Sprintf("${if eq{$received_port}{%d}}", ex.Port)
	var host, port string
	if opt.Next != "" {
		var ok bool
		host, port, ok = strings.Cut(opt.Next, ":")
		if !ok {
			t.Fatalf("realpeer: exim: Next %q is not HOST:PORT", opt.Next)
		}
	} else {
		route = "false"
		host, port = "127.0.0.1", "25"
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `# exim.conf written by realpeer.StartExim
exim_path = %s
keep_environment =
primary_hostname = exim.test.local
qualify_domain = exim.test.local
exim_user = nobody
exim_group = nogroup
spool_directory = %s
log_file_path = %s/%%slog
pid_file_path = %s/exim.pid
daemon_smtp_ports = %d : %d
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
acl_smtp_rcpt = accept
message_size_limit = 100M
smtp_accept_max = 100
queue_run_max = 10
remote_max_parallel = 10
`, filepath.Join(root, eximBinRel), filepath.Join(dir, "spool"), filepath.Join(dir, "log"), dir, ex.Port, ex.ReturnPort)
	for _, l := range opt.ExtraMain {
		conf.WriteString(l + "\n")
	}
	fmt.Fprintf(&conf, `
begin routers
to_next:
  driver = manualroute
  condition = %s
  route_list = * %s
  transport = to_next
  self = send
local:
  driver = accept
  transport = maildir

begin transports
to_next:
  driver = smtp
  port = %s
  allow_localhost
  hosts_avoid_tls = *
  hosts_try_chunking =
  hosts_try_prdr =
  hosts_try_fastopen =
`, route, host, port)
	for _, l := range opt.ExtraTransport {
		conf.WriteString("  " + l + "\n")
	}
	fmt.Fprintf(&conf, `maildir:
  driver = appendfile
  directory = %s
  maildir_format
  user = nobody
  group = nogroup
  return_path_add
  envelope_to_add
  delivery_date_add

begin retry
* * F,2h,1s
`, filepath.Join(dir, "out"))
	cf := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(cf, []byte(conf.String()), 0o644); err != nil {
		t.Fatalf("realpeer: exim: %v", err)
	}
	cmd := exec.Command(mustTool(t, "unshare"), eximArgs(filepath.Join(root, eximBinRel), "-C", cf, "-bdf", "-q1s")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EX_DIR="+dir)
	ex.proc = StartProcess(t, "exim", cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realpeer: exim logs (%s):\n%s", dir, tail(ex.Log(), 12000))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !Listening("tcp", ex.Addr()) || !Listening("tcp", ex.ReturnAddr()) {
		if !ex.proc.Running() {
			t.Fatalf("realpeer: exim exited at start: %v\n%s\nexim.conf:\n%s", ex.proc.ExitErr(), ex.Log(), conf.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("realpeer: exim not listening on %s and %s after 20s\n%s", ex.Addr(), ex.ReturnAddr(), ex.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ex
}

// eximArgs runs bin args in a private mount namespace with the passwd and
// group files of $EX_DIR (set in the command's environment) bind-mounted over the system's.
func eximArgs(bin string, args ...string) []string {
	return append([]string{"--mount", "sh", "-c",
		`mount --bind "$EX_DIR/passwd" /etc/passwd && mount --bind "$EX_DIR/group" /etc/group && exec "$@"`,
		"sh", bin}, args...)
}

// writeEximPasswd writes dir/passwd and dir/group: the system's files
// plus the user and group Debian-exim, as nobody and nogroup.
func writeEximPasswd(t testing.TB, dir string) {
	t.Helper()
	uid, gid := lookupIDs(t, "nobody")
	for _, f := range []struct{ src, dst, line string }{
		{"/etc/passwd", "passwd", fmt.Sprintf("%s:x:%d:%d::/nonexistent:/usr/sbin/nologin\n", eximUser, uid, gid)},
		{"/etc/group", "group", fmt.Sprintf("%s:x:%d:\n", eximUser, gid)},
	} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatalf("realpeer: exim: %v", err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		if err := os.WriteFile(filepath.Join(dir, f.dst), append(b, f.line...), 0o644); err != nil {
			t.Fatalf("realpeer: exim: %v", err)
		}
	}
}

// Addr returns the receiving SMTP address "127.0.0.1:Port".
func (ex *Exim) Addr() string { return "127.0.0.1:" + strconv.Itoa(ex.Port) }

// ReturnAddr returns the SMTP address "127.0.0.1:ReturnPort" (the next hop
// for pmult's front).
func (ex *Exim) ReturnAddr() string { return "127.0.0.1:" + strconv.Itoa(ex.ReturnPort) }

// PID returns the daemon's process id.
func (ex *Exim) PID() int { return ex.proc.PID() }

// Stop stops the daemon (SIGTERM to its PID). It also runs in t.Cleanup.
func (ex *Exim) Stop() { ex.proc.Stop() }

// Log returns Exim's mainlog, rejectlog and paniclog and the daemon's output.
func (ex *Exim) Log() string {
	var b strings.Builder
	for _, f := range []string{"mainlog", "rejectlog", "paniclog"} {
		data, err := os.ReadFile(filepath.Join(ex.Dir, "log", f))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s:\n%s", f, data)
	}
	b.WriteString("--- exim output:\n" + ex.proc.Output())
	return b.String()
}

// Send runs swaks against Addr (Port), with the defaults of Postfix.Send.
func (ex *Exim) Send(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return swaks(t, ex.Addr(), 120*time.Second, args)
}

// Queued returns the ids of the messages in Exim's queue (spool/input/*-H).
func (ex *Exim) Queued(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(ex.Dir, "spool", "input"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("realpeer: exim: %v", err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), "-H"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Deliveries returns every delivered file not yet returned by
// WaitDelivered, in delivery order, without waiting or consuming them.
// Recipient is the Envelope-to: address.
func (ex *Exim) Deliveries(t testing.TB) []Delivered {
	t.Helper()
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.pending(t)
}

func (ex *Exim) pending(t testing.TB) []Delivered {
	t.Helper()
	dir := filepath.Join(ex.Dir, "out", "new")
	names, err := byTime(dir, func(name string) bool { return !ex.seen[name] && !strings.HasPrefix(name, ".") })
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("realpeer: exim: %v", err)
	}
	var ds []Delivered
	for _, name := range names {
		p := filepath.Join(dir, name)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("realpeer: exim: %v", err)
		}
		d := ParseDelivered(raw)
		d.File = p
		if d.Recipient == "" {
			d.Recipient = d.Header("Envelope-to")
		}
		ds = append(ds, d)
	}
	return ds
}

// WaitDelivered waits until at least n delivered files exist that no
// earlier WaitDelivered call returned and returns them all, marking them
// returned; it fails the test after timeout with the logs and the queue.
func (ex *Exim) WaitDelivered(t testing.TB, n int, timeout time.Duration) []Delivered {
	t.Helper()
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return waitDelivered(t, n, timeout, 0, ex.seen, ex.pending, func(ds []Delivered) {
		t.Fatalf("realpeer: exim: %d of %d deliveries after %v; queue %v\n%s",
			len(ds), n, timeout, ex.Queued(t), tail(ex.Log(), 8000))
	})
}

var (
	exOnce sync.Once
	exRoot string
	exErr  error
)

// eximRoot returns the unpacked package's root in EximCacheDir,
// downloading and unpacking it first when the cache has none (once per
// process; concurrent test processes serialize on a lock file).
func eximRoot() (string, error) {
	exOnce.Do(func() {
		exRoot, exErr = prepareExim(EximCacheDir)
	})
	return exRoot, exErr
}

// prepareExim returns the newest ready unpacked package in cache, else
// downloads and unpacks it there.
func prepareExim(cache string) (string, error) {
	return debCache{dir: cache, what: "Exim", pkgs: []string{eximPackage}, version: eximPackage,
		fix: func(root string) error {
			if _, err := os.Stat(filepath.Join(root, eximBinRel)); err != nil {
				return fmt.Errorf("unpacked %s has no %s: %w", eximPackage, eximBinRel, err)
			}
			return nil
		}}.prepare()
}
