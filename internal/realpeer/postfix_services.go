// postfix_services.go: more smtpd services in one Postfix instance (a
// port-25 style and a port-587 style service, each pointed at its own
// milter with master.cf "-o smtpd_milters=...", as `pmult mta-config
// postfix` prints for named listeners).

package realpeer

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PostfixService is one more smtpd service of StartPostfix: a master.cf
// line "127.0.0.1:PORT inet n - n - - smtpd" on a free port, followed by
// its -o overrides.
type PostfixService struct {
	// Name names the service (Postfix's syslog_name is postfix/NAME) for
	// ServiceAddr and SendVia.
	Name string
	// Overrides are the service's master.cf lines after the smtpd line,
	// each "-o name=value" (as `pmult mta-config postfix` prints them,
	// without the leading "#"), e.g. "-o smtpd_milters=inet:127.0.0.1:7001".
	Overrides []string
	// Options are more -o overrides by name (applied after Overrides).
	Options map[string]string
}

// servicesCF returns the master.cf lines of opt.Services and notes their
// ports; it fails the test on a bad service.
func (pf *Postfix) servicesCF(t testing.TB, opt PostfixOptions) string {
	t.Helper()
	if len(opt.Services) == 0 {
		return ""
	}
	pf.services = map[string]int{}
	var b strings.Builder
	for _, svc := range opt.Services {
		if svc.Name == "" || strings.ContainsAny(svc.Name, " \t\n/") {
			t.Fatalf("realpeer: postfix: bad service name %q", svc.Name)
		}
		if _, dup := pf.services[svc.Name]; dup {
			t.Fatalf("realpeer: postfix: service %q twice", svc.Name)
		}
		port := FreePort(t)
		pf.services[svc.Name] = port
		fmt.Fprintf(&b, "127.0.0.1:%d inet n - %s - - smtpd\n  -o syslog_name=postfix/%s\n", port,
			map[bool]string{false: "n", true: "y"}[opt.ChrootSmtpd], svc.Name)
		for _, o := range svc.Overrides {
			o = strings.TrimSpace(o)
			if !strings.HasPrefix(o, "-o ") || !strings.Contains(o, "=") || strings.Contains(o, "\n") {
				t.Fatalf("realpeer: postfix: service %s: override %q is not \"-o name=value\"", svc.Name, o)
			}
			fmt.Fprintf(&b, "  %s\n", o)
		}
		keys := make([]string, 0, len(svc.Options))
		for k := range svc.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  -o %s=%s\n", k, svc.Options[k])
		}
	}
	return b.String()
}

// ServiceAddr returns the SMTP address "127.0.0.1:PORT" of the service
// named name (see PostfixOptions.Services); the test fails on an unknown
// name.
func (pf *Postfix) ServiceAddr(t testing.TB, name string) string {
	t.Helper()
	port, ok := pf.services[name]
	if !ok {
		t.Fatalf("realpeer: postfix: no service %q", name)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// WaitServices waits until every extra service listens (the master opens
// all its sockets at once, so this returns at once after StartPostfix).
func (pf *Postfix) WaitServices(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for name, port := range pf.services {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		for !Listening("tcp", addr) {
			if time.Now().After(deadline) {
				t.Fatalf("realpeer: postfix: service %s not listening on %s\nmaillog:\n%s", name, addr, tail(pf.Log(), 8000))
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
}

// SendVia is Send through the service named name instead of the main
// smtpd (args as for Send; a --server in args is not allowed).
func (pf *Postfix) SendVia(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	if hasFlag(args, "--server", "-s") {
		t.Fatalf("realpeer: postfix: SendVia with --server")
	}
	addr := pf.ServiceAddr(t, name)
	return swaks(t, addr, 90*time.Second, args)
}
