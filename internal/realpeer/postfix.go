// postfix.go: a private Postfix instance for one test: configuration, queue,
// log and delivered mail all under a Dir, SMTP on a free loopback port,
// every recipient delivered by a pipe transport into its own file.

package realpeer

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PostfixOptions configures StartPostfix.
type PostfixOptions struct {
	// Milters is the value of smtpd_milters, in Postfix syntax: for example
	// "inet:127.0.0.1:7000" or "{ inet:127.0.0.1:7000, default_action=accept }"
	// (see PostfixMilter). Empty: no milter.
	Milters string
	// DefaultAction is milter_default_action; default "tempfail".
	DefaultAction string
	// ExtraMain adds or overrides main.cf parameters (applied last).
	ExtraMain map[string]string
	// ChrootSmtpd runs smtpd chrooted in the queue directory (master.cf
	// chroot column y, as Debian's default), every other service not.
	ChrootSmtpd bool
	// Services are more smtpd services in the same instance, each on a
	// loopback port of its own with its own -o overrides (postfix_services.go).
	Services []PostfixService
}

// Postfix is a running private Postfix instance.
type Postfix struct {
	Dir       string // private root: etc/, queue/, data/, out/, maillog
	ConfigDir string // the -c directory (main.cf, master.cf)
	Port      int    // SMTP port on 127.0.0.1

	master *Process
	mu     sync.Mutex
	seen   map[string]bool // delivery files already returned

	services map[string]int // extra smtpd services: name -> port (postfix_services.go)
}

// Delivered is one recipient's copy of a delivered message, as written by
// the pipe transport (flags DR: Return-Path: and Delivered-To: prepended).
type Delivered struct {
	File       string // path of the delivery file
	QueueID    string // Postfix queue id
	Recipient  string // the Delivered-To: address
	ReturnPath string // envelope sender without <>, "" for the null sender
	Raw        []byte // the whole file (LF line ends)
	// Headers in order, Return-Path and Delivered-To included; each value
	// is raw: everything after the colon, continuation lines kept
	// (joined by "\n").
	Headers HeaderList
	Body    []byte // everything after the blank line ending the headers
}

// Header returns the first header field with that name (case-insensitive),
// unfolded and trimmed, or "".
func (d Delivered) Header(name string) string { return d.Headers.Value(name) }

// HeaderValues returns every header field with that name (case-insensitive),
// in order, unfolded and trimmed.
func (d Delivered) HeaderValues(name string) []string { return d.Headers.Values(name) }

const postfixDaemonDir = "/usr/lib/postfix/sbin"

// deliverScript runs as user nobody from the pipe transport: one message
// copy on stdin, for one recipient. The copy is written to a temp name and
// renamed, so readers never see a partial file.
const deliverScript = `#!/bin/sh
# realpeer pipe transport: $1 = queue id; message copy on stdin.
umask 022
out=%s
t=$(mktemp "$out/tmp/msg.XXXXXXXX") || exit 75
cat > "$t" || { rm -f "$t"; exit 75; }
mv "$t" "$out/$(date +%%s%%N)-$1-${t##*/}.eml" || exit 75
exit 0
`

// StartPostfix writes main.cf and master.cf into a fresh Dir, creates the
// queue directories (as "postfix check" would, but in 1 ms instead of 2 s
// of shell scripts) and runs the master daemon in the foreground
// as a child of the test (the same as "postfix -c DIR start", but with a
// PID the test owns), then waits for SMTP on 127.0.0.1:Port. Every service
// runs with chroot = n; logs go to DIR/maillog through postlogd; all
// recipient domains go to the pipe transport "realpeer" (user nobody,
// destination_recipient_limit = 1). The instance is stopped in t.Cleanup
// (SIGTERM to the master PID, which stops its children).
func StartPostfix(t testing.TB, opt PostfixOptions) *Postfix {
	t.Helper()
	Require(t, "postfix")
	root := Dir(t)
	pf := &Postfix{
		Dir:       root,
		ConfigDir: filepath.Join(root, "etc"),
		Port:      FreePort(t),
		seen:      map[string]bool{},
	}
	for _, d := range []string{"etc", "queue", "data", "out", "out/tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatalf("realpeer: postfix: %v", err)
		}
	}
	chownUser(t, filepath.Join(root, "data"), "postfix")
	chownUser(t, filepath.Join(root, "out"), "nobody")
	chownUser(t, filepath.Join(root, "out/tmp"), "nobody")

	out := filepath.Join(root, "out")
	deliver := filepath.Join(root, "deliver.sh")
	if err := os.WriteFile(deliver, []byte(fmt.Sprintf(deliverScript, out)), 0o755); err != nil {
		t.Fatalf("realpeer: postfix: %v", err)
	}

	defAction := opt.DefaultAction
	if defAction == "" {
		defAction = "tempfail"
	}
	main := map[string]string{
		"compatibility_level":                  "3.6",
		"queue_directory":                      filepath.Join(root, "queue"),
		"data_directory":                       filepath.Join(root, "data"),
		"maillog_file":                         filepath.Join(root, "maillog"),
		"maillog_file_prefixes":                root,
		"myhostname":                           "mta.test.local",
		"mydomain":                             "test.local",
		"myorigin":                             "$myhostname",
		"mydestination":                        "",
		"relay_domains":                        "",
		"inet_interfaces":                      "127.0.0.1",
		"inet_protocols":                       "ipv4",
		"mynetworks":                           "127.0.0.0/8",
		"smtpd_relay_restrictions":             "permit_mynetworks, reject",
		"smtpd_recipient_restrictions":         "",
		"smtpd_peername_lookup":                "no",
		"smtpd_authorized_xclient_hosts":       "127.0.0.0/8",
		"smtpd_authorized_xforward_hosts":      "127.0.0.0/8",
		"smtpd_error_sleep_time":               "0",
		"smtpd_soft_error_limit":               "100",
		"smtpd_hard_error_limit":               "200",
		"in_flow_delay":                        "0",
		"transport_maps":                       "static:realpeer",
		"default_transport":                    "realpeer",
		"relay_transport":                      "realpeer",
		"local_transport":                      "realpeer",
		"realpeer_destination_recipient_limit": "1",
		"alias_maps":                           "",
		"alias_database":                       "",
		"local_recipient_maps":                 "",
		"biff":                                 "no",
		"append_dot_mydomain":                  "no",
		"smtputf8_enable":                      "no",
		"notify_classes":                       "",
		"queue_run_delay":                      "1s",
		"minimal_backoff_time":                 "1s",
		"maximal_backoff_time":                 "2s",
		"delay_warning_time":                   "0",
		"smtpd_milters":                        opt.Milters,
		"milter_protocol":                      "6",
		"milter_default_action":                defAction,
		"milter_connect_timeout":               "5s",
		"milter_command_timeout":               "10s",
		"milter_content_timeout":               "20s",
	}
	for k, v := range opt.ExtraMain {
		main[k] = v
	}
	keys := make([]string, 0, len(main))
	for k := range main {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var mainCF strings.Builder
	mainCF.WriteString("# main.cf written by realpeer.StartPostfix\n")
	for _, k := range keys {
		fmt.Fprintf(&mainCF, "%s = %s\n", k, main[k])
	}
	masterCF := fmt.Sprintf(`# master.cf written by realpeer.StartPostfix (chroot = n everywhere, smtpd: PostfixOptions.ChrootSmtpd)
127.0.0.1:%d inet n - %s - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n -  0 cleanup
qmgr       unix  n - n 300 1 qmgr
rewrite    unix  - - n -  - trivial-rewrite
bounce     unix  - - n -  0 bounce
defer      unix  - - n -  0 bounce
trace      unix  - - n -  0 bounce
verify     unix  - - n -  1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -  - proxymap
proxywrite unix  - - n -  1 proxymap
showq      unix  n - n -  - showq
error      unix  - - n -  - error
retry      unix  - - n -  - error
discard    unix  - - n -  - discard
anvil      unix  - - n -  1 anvil
scache     unix  - - n -  1 scache
postlog    unix-dgram n - n - 1 postlogd
realpeer   unix  - n n -  - pipe
  flags=DR user=nobody argv=%s ${queue_id}
`, pf.Port, map[bool]string{false: "n", true: "y"}[opt.ChrootSmtpd], deliver) + pf.servicesCF(t, opt)
	if err := os.WriteFile(filepath.Join(pf.ConfigDir, "main.cf"), []byte(mainCF.String()), 0o644); err != nil {
		t.Fatalf("realpeer: postfix: %v", err)
	}
	if err := os.WriteFile(filepath.Join(pf.ConfigDir, "master.cf"), []byte(masterCF), 0o644); err != nil {
		t.Fatalf("realpeer: postfix: %v", err)
	}

	// Postfix programs wait in 300 ms steps while main.cf is only a second
	// or two old (it might still be being edited): 2.5 s at every start.
	// Backdate the files.
	old := time.Now().Add(-time.Minute)
	for _, f := range []string{"main.cf", "master.cf"} {
		if err := os.Chtimes(filepath.Join(pf.ConfigDir, f), old, old); err != nil {
			t.Fatalf("realpeer: postfix: %v", err)
		}
	}
	makeQueueDirs(t, filepath.Join(root, "queue"))
	pf.master = StartProcess(t, "postfix master",
		exec.Command(filepath.Join(postfixDaemonDir, "master"), "-c", pf.ConfigDir, "-s"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realpeer: postfix maillog (%s):\n%s", filepath.Join(root, "maillog"), tail(pf.Log(), 12000))
		}
	})
	pf.waitListening(t, 20*time.Second)
	return pf
}

// queueDirs are the directories post-install create-missing makes under
// queue_directory: owner group (empty: root), mode.
var queueDirs = []struct {
	name, owner, group string
	mode               os.FileMode
}{
	{"active", "postfix", "", 0o700},
	{"bounce", "postfix", "", 0o700},
	{"corrupt", "postfix", "", 0o700},
	{"defer", "postfix", "", 0o700},
	{"deferred", "postfix", "", 0o700},
	{"flush", "postfix", "", 0o700},
	{"hold", "postfix", "", 0o700},
	{"incoming", "postfix", "", 0o700},
	{"private", "postfix", "", 0o700},
	{"saved", "postfix", "", 0o700},
	{"trace", "postfix", "", 0o700},
	{"maildrop", "postfix", "postdrop", 0o730},
	{"public", "postfix", "postdrop", 0o710},
	{"pid", "", "", 0o755},
}

func makeQueueDirs(t testing.TB, queue string) {
	t.Helper()
	uid, _ := lookupIDs(t, "postfix")
	gr, err := user.LookupGroup("postdrop")
	if err != nil {
		t.Fatalf("realpeer: postfix: group postdrop: %v (sh %s)", err, InstallScript)
	}
	postdrop, _ := strconv.Atoi(gr.Gid)
	for _, d := range queueDirs {
		p := filepath.Join(queue, d.name)
		if err := os.Mkdir(p, d.mode); err != nil {
			t.Fatalf("realpeer: postfix: %v", err)
		}
		o, g := 0, 0
		if d.owner == "postfix" {
			o = uid
		}
		if d.group == "postdrop" {
			g = postdrop
		}
		if err := os.Chown(p, o, g); err != nil {
			t.Fatalf("realpeer: postfix: %v (the tests must run as root)", err)
		}
		if err := os.Chmod(p, d.mode); err != nil { // Mkdir applies the umask
			t.Fatalf("realpeer: postfix: %v", err)
		}
	}
}

func (pf *Postfix) waitListening(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if !pf.master.Running() {
			t.Fatalf("realpeer: postfix master exited at start: %v\nmaster output:\n%s\nmaillog:\n%s",
				pf.master.ExitErr(), pf.master.Output(), tail(pf.Log(), 8000))
		}
		if Listening("tcp", pf.Addr()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("realpeer: postfix not listening on %s after %v\nmaillog:\n%s", pf.Addr(), timeout, tail(pf.Log(), 8000))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Addr returns the SMTP address "127.0.0.1:PORT".
func (pf *Postfix) Addr() string { return "127.0.0.1:" + strconv.Itoa(pf.Port) }

// PID returns the master daemon's process id.
func (pf *Postfix) PID() int { return pf.master.PID() }

// Log returns the contents of DIR/maillog (written by postlogd).
func (pf *Postfix) Log() string {
	b, err := os.ReadFile(filepath.Join(pf.Dir, "maillog"))
	if err != nil {
		return fmt.Sprintf("(no maillog: %v)", err)
	}
	return string(b)
}

// Stop stops the instance (SIGTERM to the master's PID; the master stops
// its children). It also runs in t.Cleanup.
func (pf *Postfix) Stop() { pf.master.Stop() }

// Send runs swaks against the instance: swaks --server ADDR, then
// "--from sender@example.org" and "--to rcpt@example.com" unless args give
// --from/-f or --to/-t, then args. It returns swaks's transcript (stdout
// and stderr) and a non-nil error when swaks exits non-zero, as it does
// when the server rejects the message or a recipient.
func (pf *Postfix) Send(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return swaks(t, pf.Addr(), 90*time.Second, args)
}

func hasFlag(args []string, names ...string) bool {
	for _, a := range args {
		for _, n := range names {
			if a == n || strings.HasPrefix(a, n+"=") {
				return true
			}
		}
	}
	return false
}

// Deliveries returns every delivery file not yet returned by
// WaitDelivered, in delivery order, without waiting or consuming them.
func (pf *Postfix) Deliveries(t testing.TB) []Delivered {
	t.Helper()
	pf.mu.Lock()
	defer pf.mu.Unlock()
	return pf.pending(t)
}

func (pf *Postfix) pending(t testing.TB) []Delivered {
	t.Helper()
	out := filepath.Join(pf.Dir, "out")
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatalf("realpeer: postfix: %v", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".eml") && !pf.seen[e.Name()] {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // names start with a nanosecond timestamp
	var ds []Delivered
	for _, n := range names {
		p := filepath.Join(out, n)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("realpeer: postfix: %v", err)
		}
		d := ParseDelivered(raw)
		d.File = p
		if parts := strings.SplitN(n, "-", 3); len(parts) == 3 {
			d.QueueID = parts[1]
		}
		ds = append(ds, d)
	}
	return ds
}

// WaitDelivered waits until at least n delivery files exist that no earlier
// WaitDelivered call returned, and returns all of them (in delivery order,
// possibly more than n), marking them returned. It waits 300 ms more
// for stragglers once n are there. It fails the test after timeout with
// the maillog and the queue listing.
func (pf *Postfix) WaitDelivered(t testing.TB, n int, timeout time.Duration) []Delivered {
	t.Helper()
	pf.mu.Lock()
	defer pf.mu.Unlock()
	return waitDelivered(t, n, timeout, 300*time.Millisecond, pf.seen, pf.pending, func(ds []Delivered) {
		var rcpts []string
		for _, d := range ds {
			rcpts = append(rcpts, d.Recipient)
		}
		t.Fatalf("realpeer: postfix: %d of %d deliveries after %v (got %v)\nqueue:\n%s\nmaillog:\n%s",
			len(ds), n, timeout, rcpts, pf.queueListing(), tail(pf.Log(), 8000))
	})
}

// waitDelivered is the MTAs' WaitDelivered: it polls pending (the delivery
// files not in seen) until there are n, waits settle more for stragglers,
// marks them all seen and returns them; after timeout it calls fail with
// what there is.
func waitDelivered(t testing.TB, n int, timeout, settle time.Duration, seen map[string]bool,
	pending func(testing.TB) []Delivered, fail func([]Delivered)) []Delivered {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ds := pending(t)
		if len(ds) >= n {
			if settle > 0 {
				time.Sleep(settle)
				ds = pending(t)
			}
			for _, d := range ds {
				seen[filepath.Base(d.File)] = true
			}
			return ds
		}
		if time.Now().After(deadline) {
			fail(ds)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ParseDelivered splits a delivery file into headers and body and fills
// Recipient and ReturnPath from Delivered-To: and Return-Path:.
func ParseDelivered(raw []byte) Delivered {
	d := Delivered{Raw: raw}
	data := raw
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(d.Headers) > 0 {
			d.Headers[len(d.Headers)-1][1] += "\n" + string(line)
			continue
		}
		name, value, _ := strings.Cut(string(line), ":")
		d.Headers = append(d.Headers, [2]string{name, value})
	}
	d.Body = data
	d.Recipient = d.Header("Delivered-To")
	d.ReturnPath = strings.TrimSuffix(strings.TrimPrefix(d.Header("Return-Path"), "<"), ">")
	return d
}

var holdRE = regexp.MustCompile(`^([0-9A-Za-z]+)!\s`)

// HoldQueue returns the ids of the messages in the hold queue (where
// QUARANTINE puts them): the lines of "postqueue -c DIR -p" whose id ends
// in "!".
func (pf *Postfix) HoldQueue(t testing.TB) []string {
	t.Helper()
	r := runCmd(30*time.Second, "", mustTool(t, "postqueue"), "-c", pf.ConfigDir, "-p")
	if r.err != nil {
		t.Fatalf("realpeer: postqueue -c %s -p: %v\n%s%s\nmaillog:\n%s", pf.ConfigDir, r.err, r.stdout, r.stderr, tail(pf.Log(), 4000))
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		if m := holdRE.FindStringSubmatch(sc.Text()); m != nil {
			ids = append(ids, m[1])
		}
	}
	return ids
}

// Queue returns the output of "postqueue -c DIR -p" (or the error).
func (pf *Postfix) Queue() string { return pf.queueListing() }

func (pf *Postfix) queueListing() string {
	p, err := ToolPath("postqueue")
	if err != nil {
		return err.Error()
	}
	r := runCmd(30*time.Second, "", p, "-c", pf.ConfigDir, "-p")
	s := r.stdout + r.stderr
	if r.err != nil {
		s += fmt.Sprintf("\n(postqueue: %v)", r.err)
	}
	return s
}
