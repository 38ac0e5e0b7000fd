// sendmail.go: a private Sendmail 8.17 daemon for one test, run beside the
// system's Postfix. Debian's sendmail packages are not installed (they
// would replace Postfix as the system MTA): they are downloaded once with
// "apt-get download", unpacked with "dpkg -x" into a per-machine cache
// (SendmailCacheDir) and run from there with a config built by m4. Mail
// is accepted into a private queue directory and stays there
// (DeliveryMode=queueonly): Queued parses the qf (envelope, headers) and
// df (body) files.

package realpeer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SendmailCacheDir holds the unpacked Sendmail packages, one directory per
// sendmail-bin version (for example 8.17.1.9-2+deb12u2), usable once it
// holds a READY file. scripts/install-test-deps.sh prepares it too. It
// lives outside the temp directory so that it survives between test runs.
const SendmailCacheDir = "/var/tmp/mailmux-sendmail"

// sendmailPackages are the Debian packages unpacked into the cache.
var sendmailPackages = []string{"sendmail-bin", "sendmail-cf", "sendmail-base", "libwrap0"}

// Paths inside an unpacked root.
const (
	sendmailBinRel = "usr/libexec/sendmail/sendmail"
	sendmailCFRel  = "usr/share/sendmail/cf"
	sendmailLibRel = "usr/lib/x86_64-linux-gnu"
)

// SendmailHostname is the host name the private Sendmail runs under (in
// its own UTS namespace: without a resolvable name Sendmail waits 60 s
// at start).
const SendmailHostname = "mta.test.local"

// SendmailOptions configures StartSendmail.
type SendmailOptions struct {
	// Milter is the socket of the (first) milter, in Sendmail's S= syntax,
	// which is libmilter's: "inet:PORT@127.0.0.1", "unix:/path". Empty
	// (and no Milters): no milter.
	Milter string
	// Milters are more milters after Milter, chained by Sendmail in this
	// order (one INPUT_MAIL_FILTER line each).
	Milters []string
	// Flags is each milter's F= value; default "T" (tempfail when the
	// milter is unreachable). "-" gives an empty F=.
	Flags string
	// Timeouts is each milter's T= value; default "C:10s;S:30s;R:30s;E:60s".
	Timeouts string
	// Debug, when set, adds "-dDebug" (for example "64.5" logs the milter
	// traffic); the output is part of Log.
	Debug string
	// ExtraMC is appended to the generated .mc file (m4 lines ending in
	// "dnl").
	ExtraMC string
}

// Sendmail is a running private Sendmail daemon (sendmail -bD).
type Sendmail struct {
	Dir   string // private directory: sendmail.mc, sendmail.cf, queue/, etc/, traffic.log
	Port  int    // SMTP port on 127.0.0.1
	Root  string // the unpacked packages (in SendmailCacheDir)
	Queue string // queue directory (qf*, df* files)

	proc *Process
}

// Queued is one message in the private Sendmail's queue.
type Queued struct {
	ID     string // queue id (the file names without qf/df)
	QF, DF string // paths of the files
	// Sender is the envelope sender as stored in the S line, for example
	// "<a@example.org>" ("<>" for the null sender).
	Sender string
	// Recipients are the addresses of the R lines, in order, as stored
	// (after the flags and the colon), for example "<b@example.com>".
	// Recipients rejected at RCPT or deleted by a milter are absent.
	Recipients []string
	// Headers in order, from the H lines with their "?flags?" condition
	// removed; each value is raw: everything after the colon,
	// continuation lines kept (joined by "\n"). Sendmail's own Received
	// and (conditional) Return-Path headers are included.
	Headers HeaderList
	// Macros are the $ lines: macro name ("r", "_", "{daemon_flags}") to value.
	Macros map[string]string
	Body   []byte // the df file (LF line ends, no dot stuffing)
	Raw    []byte // the qf file
}

// Header returns the first header field with that name (case-insensitive),
// unfolded and trimmed, or "".
func (q Queued) Header(name string) string { return q.Headers.Value(name) }

// HeaderValues returns every header field with that name (case-insensitive),
// in order, unfolded and trimmed.
func (q Queued) HeaderValues(name string) []string { return q.Headers.Values(name) }

// StartSendmail builds sendmail.cf (m4, from the unpacked sendmail-cf) in
// a fresh Dir and runs "sendmail -bD" (daemon in the foreground, a child
// of the test) on a free port on 127.0.0.1, in its own UTS namespace with
// host name SendmailHostname, and waits until it listens. Delivery mode
// is queueonly (see Queued), no DNS is used (hosts file in the Dir),
// any client may relay, SMTP traffic is logged (see Log). Milters get
// one INPUT_MAIL_FILTER line each (F= Flags, T= Timeouts). The daemon is
// stopped in t.Cleanup. The first use on a machine downloads the packages
// (see Require "sendmail"); later ones start in about 50 ms.
func StartSendmail(t testing.TB, opt SendmailOptions) *Sendmail {
	t.Helper()
	Require(t, "sendmail", "m4", "unshare")
	root, err := sendmailRoot()
	if err != nil {
		t.Fatalf("realpeer: sendmail: %v", err)
	}
	dir := Dir(t)
	sm := &Sendmail{Dir: dir, Port: FreePort(t), Root: root, Queue: filepath.Join(dir, "queue")}
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatalf("realpeer: sendmail: %v", err)
	}
	if err := os.Mkdir(sm.Queue, 0o700); err != nil {
		t.Fatalf("realpeer: sendmail: %v", err)
	}
	files := map[string]string{
		"etc/hosts":          "127.0.0.1 localhost " + SendmailHostname + "\n",
		"etc/service.switch": "hosts files\naliases files\n",
		"statistics":         "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("realpeer: sendmail: %v", err)
		}
	}

	flags := opt.Flags
	if flags == "" {
		flags = "T"
	} else if flags == "-" {
		flags = ""
	}
	timeouts := opt.Timeouts
	if timeouts == "" {
		timeouts = "C:10s;S:30s;R:30s;E:60s"
	}
	var milters []string
	if opt.Milter != "" {
		milters = append(milters, opt.Milter)
	}
	milters = append(milters, opt.Milters...)

	var mc strings.Builder
	q := func(s string) string { return "`" + s + "'" }
	def := func(name, value string) { fmt.Fprintf(&mc, "define(%s, %s)dnl\n", q(name), q(value)) }
	mc.WriteString("divert(-1)\n# sendmail.mc written by realpeer.StartSendmail\ndivert(0)dnl\n")
	mc.WriteString("OSTYPE(`linux')dnl\n")
	def("MAIL_SETTINGS_DIR", filepath.Join(dir, "etc")+"/")
	def("QUEUE_DIR", sm.Queue)
	def("ALIAS_FILE", "")
	def("STATUS_FILE", filepath.Join(dir, "statistics"))
	def("confPID_FILE", filepath.Join(dir, "sendmail.pid"))
	def("confHOSTS_FILE", filepath.Join(dir, "etc/hosts"))
	def("confSERVICE_SWITCH_FILE", filepath.Join(dir, "etc/service.switch"))
	def("confDELIVERY_MODE", "queueonly")
	def("confDONT_PROBE_INTERFACES", "True")
	def("confTO_IDENT", "0s")
	def("confQUEUE_LA", "1000")
	def("confREFUSE_LA", "1000")
	def("confDELAY_LA", "0")
	def("confMIN_FREE_BLOCKS", "0")
	mc.WriteString("FEATURE(`no_default_msa')dnl\n")
	mc.WriteString("FEATURE(`nocanonify')dnl\n")
	mc.WriteString("FEATURE(`accept_unresolvable_domains')dnl\n")
	mc.WriteString("FEATURE(`promiscuous_relay')dnl\n")
	fmt.Fprintf(&mc, "DAEMON_OPTIONS(`Port=%d, Addr=127.0.0.1, Name=MTA')dnl\n", sm.Port)
	mc.WriteString("MAILER(`smtp')dnl\n")
	for i, m := range milters {
		fmt.Fprintf(&mc, "INPUT_MAIL_FILTER(`m%d', `S=%s, F=%s, T=%s')dnl\n", i+1, m, flags, timeouts)
	}
	mc.WriteString(opt.ExtraMC)
	mcFile := filepath.Join(dir, "sendmail.mc")
	if err := os.WriteFile(mcFile, []byte(mc.String()), 0o644); err != nil {
		t.Fatalf("realpeer: sendmail: %v", err)
	}
	cfDir := filepath.Join(root, sendmailCFRel)
	r := runCmd(30*time.Second, "", mustTool(t, "m4"), "-D_CF_DIR_="+cfDir+"/",
		filepath.Join(cfDir, "m4/cf.m4"), mcFile)
	if r.err != nil || r.stdout == "" {
		t.Fatalf("realpeer: sendmail: m4 %s: %v\n%s\n%s", mcFile, r.err, r.stderr, mc.String())
	}
	cf := filepath.Join(dir, "sendmail.cf")
	if err := os.WriteFile(cf, []byte(r.stdout), 0o644); err != nil {
		t.Fatalf("realpeer: sendmail: %v", err)
	}

	args := []string{"--uts", "sh", "-c", `hostname "$SM_HOSTNAME" && exec "$0" "$@"`,
		filepath.Join(root, sendmailBinRel), "-C", cf, "-bD", "-X", filepath.Join(dir, "traffic.log")}
	if opt.Debug != "" {
		args = append(args, "-d"+opt.Debug)
	}
	cmd := exec.Command(mustTool(t, "unshare"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), sendmailEnv(root)...)
	sm.proc = StartProcess(t, "sendmail", cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realpeer: sendmail log (%s):\n%s", dir, tail(sm.Log(), 12000))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !Listening("tcp", sm.Addr()) {
		if !sm.proc.Running() {
			t.Fatalf("realpeer: sendmail exited at start: %v\n%s\nsendmail.mc:\n%s", sm.proc.ExitErr(), sm.Log(), mc.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("realpeer: sendmail not listening on %s after 20s\n%s", sm.Addr(), sm.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sm
}

func sendmailEnv(root string) []string {
	return []string{"LD_LIBRARY_PATH=" + filepath.Join(root, sendmailLibRel), "SM_HOSTNAME=" + SendmailHostname}
}

// Addr returns the SMTP address "127.0.0.1:PORT".
func (sm *Sendmail) Addr() string { return "127.0.0.1:" + strconv.Itoa(sm.Port) }

// PID returns the daemon's process id.
func (sm *Sendmail) PID() int { return sm.proc.PID() }

// Stop stops the daemon (SIGTERM to its PID). It also runs in t.Cleanup.
func (sm *Sendmail) Stop() { sm.proc.Stop() }

// Log returns the SMTP traffic log (-X: "PID <<< command", "PID >>>
// reply") followed by the daemon's own output (debug output with
// Debug). Sendmail's syslog messages are lost: there is no syslog.
func (sm *Sendmail) Log() string {
	b, err := os.ReadFile(filepath.Join(sm.Dir, "traffic.log"))
	s := string(b)
	if err != nil {
		s = fmt.Sprintf("(no traffic log: %v)\n", err)
	}
	return s + "--- sendmail output:\n" + sm.proc.Output()
}

// Send runs swaks against the daemon: swaks --server ADDR, then
// "--from sender@example.org" and "--to rcpt@example.com" unless args give
// --from/-f or --to/-t, then args. It returns swaks's transcript and a
// non-nil error when swaks exits non-zero (a rejected message or
// recipient). The message is queued when Send returns (Sendmail answers
// 250 after writing the qf file).
func (sm *Sendmail) Send(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return swaks(t, sm.Addr(), 90*time.Second, args)
}

// Queued returns every message in the queue directory, in the order the
// qf files were written.
func (sm *Sendmail) Queued(t testing.TB) []Queued {
	t.Helper()
	names, err := byTime(sm.Queue, func(name string) bool { return strings.HasPrefix(name, "qf") })
	if err != nil {
		t.Fatalf("realpeer: sendmail: %v", err)
	}
	var out []Queued
	for _, name := range names {
		id := strings.TrimPrefix(name, "qf")
		qf := filepath.Join(sm.Queue, name)
		df := filepath.Join(sm.Queue, "df"+id)
		raw, err := os.ReadFile(qf)
		if err != nil {
			t.Fatalf("realpeer: sendmail: %v", err)
		}
		body, err := os.ReadFile(df)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("realpeer: sendmail: %v", err)
		}
		m := ParseQF(raw)
		m.ID, m.QF, m.DF, m.Body = id, qf, df, body
		out = append(out, m)
	}
	return out
}

// ParseQF parses a Sendmail qf file (queue file version 8): S (sender),
// R (recipients), H (headers, with continuation lines) and $ (macros)
// lines; the others are ignored. Body and the file names are left empty.
func ParseQF(raw []byte) Queued {
	m := Queued{Raw: raw, Macros: map[string]string{}}
	inHeader := false
	for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if line == "" {
			inHeader = false
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && inHeader {
			m.Headers[len(m.Headers)-1][1] += "\n" + line
			continue
		}
		inHeader = false
		switch line[0] {
		case 'S':
			m.Sender = line[1:]
		case 'R':
			// R<flags>:<address>
			if _, addr, ok := strings.Cut(line[1:], ":"); ok {
				m.Recipients = append(m.Recipients, addr)
			} else {
				m.Recipients = append(m.Recipients, line[1:])
			}
		case 'H':
			h := line[1:]
			if strings.HasPrefix(h, "?") {
				if i := strings.IndexByte(h[1:], '?'); i >= 0 {
					h = h[i+2:]
				}
			}
			name, value, _ := strings.Cut(h, ":")
			m.Headers = append(m.Headers, [2]string{name, value})
			inHeader = true
		case '$':
			v := line[1:]
			if strings.HasPrefix(v, "{") {
				if i := strings.IndexByte(v, '}'); i >= 0 {
					m.Macros[v[:i+1]] = v[i+1:]
					continue
				}
			}
			if v != "" {
				m.Macros[v[:1]] = v[1:]
			}
		}
	}
	return m
}

var (
	smOnce sync.Once
	smRoot string
	smErr  error
)

// sendmailRoot returns the unpacked packages' root in SendmailCacheDir,
// downloading and unpacking them first when the cache has none (once per
// process; concurrent test processes serialize on a lock file).
func sendmailRoot() (string, error) {
	smOnce.Do(func() {
		smRoot, smErr = prepareSendmail()
		if smErr == nil {
			smErr = checkSendmailRoot(smRoot)
		}
	})
	return smRoot, smErr
}

func prepareSendmail() (string, error) {
	return debCache{dir: SendmailCacheDir, what: "Sendmail", pkgs: sendmailPackages, version: "sendmail-bin",
		fix: func(root string) error {
			// setgid mail: glibc would ignore LD_LIBRARY_PATH (libwrap.so.0).
			return os.Chmod(filepath.Join(root, sendmailBinRel), 0o755)
		}}.prepare()
}

// checkSendmailRoot checks the unpacked files and that the binary runs
// (address test mode on an empty config: it prints its version).
func checkSendmailRoot(root string) error {
	for _, rel := range []string{sendmailBinRel, filepath.Join(sendmailLibRel, "libwrap.so.0"),
		filepath.Join(sendmailCFRel, "m4/cf.m4")} {
		if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
			return fmt.Errorf("broken Sendmail cache (remove %s and rerun): %v", root, err)
		}
	}
	fi, err := os.Stat(filepath.Join(root, sendmailBinRel))
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSetgid != 0 {
		return fmt.Errorf("%s is setgid (glibc would ignore LD_LIBRARY_PATH): chmod g-s it", filepath.Join(root, sendmailBinRel))
	}
	unshare, err := ToolPath("unshare")
	if err != nil {
		return err
	}
	cmd := exec.Command(unshare, "--uts", "sh", "-c", `hostname "$SM_HOSTNAME" && exec "$0" "$@"`,
		filepath.Join(root, sendmailBinRel), "-C", "/dev/null", "-d0.1", "-bt")
	cmd.Env = append(os.Environ(), sendmailEnv(root)...)
	out, _ := runWithTimeout(cmd, 20*time.Second)
	if !strings.Contains(out, "Version 8.") {
		return fmt.Errorf("%s does not run (unshare --uts, as root): %s", filepath.Join(root, sendmailBinRel), tail(out, 2000))
	}
	return nil
}

// runWithTimeout runs cmd (stdin empty) and returns its combined output.
func runWithTimeout(cmd *exec.Cmd, timeout time.Duration) (string, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.String(), err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return buf.String(), fmt.Errorf("%s timed out after %v", cmd.Path, timeout)
	}
}
