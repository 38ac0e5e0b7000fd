// postfix_proxy.go: a private Postfix with an SMTP content filter in the
// mail path, the two ways Postfix has:
//
//   - before the queue (smtpd_proxy_filter): the main smtpd hands each
//     transaction, live, to the filter, which relays it to a second smtpd
//     (the reinjection service, "-o smtpd_proxy_filter=" empty, XFORWARD
//     allowed from loopback); the client gets the filter's answers;
//   - after the queue (content_filter, as amavis on 10024/10025): the main
//     smtpd queues the message, the "filter" smtp transport delivers it to
//     the filter (with XFORWARD), which relays it to the reinjection smtpd
//     ("-o content_filter=" empty, no milters again).
//
// Mail coming back through the reinjection service is delivered as with
// StartPostfix (Deliveries, WaitDelivered). The reinjection and transport
// services are added to master.cf after StartPostfix and the master is told
// to reread it (SIGHUP), so postfix.go needs no change.

package realpeer

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Filter modes of PostfixFilter.
const (
	FilterBeforeQueue = "proxy"   // smtpd_proxy_filter
	FilterAfterQueue  = "content" // content_filter
)

// PostfixFilter is where StartPostfixFilter puts the filter.
type PostfixFilter struct {
	// Mode is FilterBeforeQueue or FilterAfterQueue.
	Mode string
	// Filter is the filter's "HOST:PORT" (pmult's SMTP front).
	Filter string
	// ReinjectPort is the port of the reinjection smtpd on 127.0.0.1 (the
	// filter's next hop); 0 takes a free one (see PostfixFiltered.ReinjectAddr).
	ReinjectPort int
	// Timeout is smtpd_proxy_timeout (before the queue) or the filter
	// transport's smtp_data_done_timeout (after it); default "60s".
	Timeout string
	// ReinjectOptions are more "-o" overrides of the reinjection smtpd
	// (name to value).
	ReinjectOptions map[string]string
}

// PostfixFiltered is a private Postfix with a filter in its mail path.
type PostfixFiltered struct {
	*Postfix
	ReinjectPort int
}

// ReinjectAddr returns the reinjection smtpd's "127.0.0.1:PORT".
func (pf *PostfixFiltered) ReinjectAddr() string { return "127.0.0.1:" + strconv.Itoa(pf.ReinjectPort) }

// StartPostfixFilter starts StartPostfix(opt) with the filter f in its
// mail path (see the file comment). opt.Milters apply to the main smtpd
// only (before the filter); the reinjection smtpd runs no milters.
func StartPostfixFilter(t testing.TB, opt PostfixOptions, f PostfixFilter) *PostfixFiltered {
	t.Helper()
	if f.Filter == "" {
		t.Fatalf("realpeer: postfix filter: no Filter address")
	}
	port := f.ReinjectPort
	if port == 0 {
		port = FreePort(t)
	}
	timeout := f.Timeout
	if timeout == "" {
		timeout = "60s"
	}
	main := map[string]string{}
	for k, v := range opt.ExtraMain {
		main[k] = v
	}
	var transport string
	switch f.Mode {
	case FilterBeforeQueue:
		main["smtpd_proxy_filter"] = f.Filter
		main["smtpd_proxy_timeout"] = timeout
		main["smtpd_proxy_ehlo"] = "mta.test.local"
	case FilterAfterQueue:
		host, fport, err := net.SplitHostPort(f.Filter)
		if err != nil {
			t.Fatalf("realpeer: postfix filter: Filter %q: %v", f.Filter, err)
		}
		main["content_filter"] = "filter:[" + host + "]:" + fport
		transport = fmt.Sprintf("filter     unix  - - n -  10 smtp\n"+
			"  -o syslog_name=postfix/filter\n"+
			"  -o smtp_send_xforward_command=yes\n"+
			"  -o disable_mime_output_conversion=yes\n"+
			"  -o smtp_data_done_timeout=%s\n"+
			"  -o smtp_connect_timeout=5s\n", timeout)
	default:
		t.Fatalf("realpeer: postfix filter: mode %q (want %q or %q)", f.Mode, FilterBeforeQueue, FilterAfterQueue)
	}
	opt.ExtraMain = main
	pf := StartPostfix(t, opt)

	reinject := fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n"+
		"  -o syslog_name=postfix/reinject\n"+
		"  -o smtpd_proxy_filter=\n"+
		"  -o content_filter=\n"+
		"  -o smtpd_milters=\n"+
		"  -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n"+
		"  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters\n", port)
	for k, v := range f.ReinjectOptions {
		reinject += fmt.Sprintf("  -o %s=%s\n", k, v)
	}
	mcf := filepath.Join(pf.ConfigDir, "master.cf")
	fh, err := os.OpenFile(mcf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("realpeer: postfix filter: %v", err)
	}
	_, err = fh.WriteString("# added by realpeer.StartPostfixFilter\n" + reinject + transport)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("realpeer: postfix filter: %v", err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(mcf, old, old); err != nil {
		t.Fatalf("realpeer: postfix filter: %v", err)
	}
	// The master rereads master.cf on SIGHUP and opens the new service's
	// socket; the running services are kept. Its SIGHUP handler is set
	// only after it opened the listeners StartPostfix waited for
	// (master_config, then master_sigsetup), and a SIGHUP before that
	// kills it: wait until the kernel shows SIGHUP caught.
	deadline := time.Now().Add(20 * time.Second)
	for !catches(pf.PID(), syscall.SIGHUP) {
		if time.Now().After(deadline) || !pf.master.Running() {
			t.Fatalf("realpeer: postfix filter: the master does not catch SIGHUP\nmaillog:\n%s", tail(pf.Log(), 8000))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := syscall.Kill(pf.PID(), syscall.SIGHUP); err != nil {
		t.Fatalf("realpeer: postfix filter: reload: %v", err)
	}
	out := &PostfixFiltered{Postfix: pf, ReinjectPort: port}
	deadline = time.Now().Add(20 * time.Second)
	for !Listening("tcp", out.ReinjectAddr()) {
		if !pf.master.Running() {
			t.Fatalf("realpeer: postfix filter: the master exited at reload: %v\nmaillog:\n%s", pf.master.ExitErr(), tail(pf.Log(), 8000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("realpeer: postfix filter: reinjection smtpd not listening on %s\nmaillog:\n%s", out.ReinjectAddr(), tail(pf.Log(), 8000))
		}
		time.Sleep(25 * time.Millisecond)
	}
	return out
}

// catches reports whether process pid has a handler for sig (the SigCgt
// mask of /proc/PID/status).
func catches(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && m&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}
