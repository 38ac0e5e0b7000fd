// front_test.go: mta-config with [mta_macros], and check's warning about
// the MTA's end-of-message timer.

package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/internal/testmilter"
	mp "github.com/mailmux/mailmux/milterproto"
)

// mta-config prints the [mta_macros] baseline plus what a backend asks
// for, and says that pmult sets those stages' lists itself.
func TestMTAConfigBaseline(t *testing.T) {
	m := &testmilter.Server{SymLists: []mp.SymList{{Stage: mp.StageConnect, Macros: "{daemon_name} {my_macro}"}}}
	ba, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	host, port, _ := net.SplitHostPort(ba.String())
	cfg := filepath.Join(t.TempDir(), "pmult.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[mta_macros]
connect = ["j", "{daemon_name}", "v", "_", "{client_ptr}"]
helo = []
[[backend]]
name = "a"
url = "inet:%s@%s"
`, port, host)), 0o644)
	for _, tc := range []struct{ mta, connect, helo, comment string }{
		{"postfix", "milter_connect_macros = j {daemon_name} v _ {client_ptr} {my_macro}\n", "milter_helo_macros = \n", "# Backends ask for macro lists at: connect."},
		{"sendmail", "define(`confMILTER_MACROS_CONNECT', `j, {daemon_name}, v, _, {client_ptr}, {my_macro}')dnl\n",
			"define(`confMILTER_MACROS_HELO', `')dnl\n", "dnl Backends ask for macro lists at: connect."},
	} {
		var out, errb bytes.Buffer
		if code := run([]string{"mta-config", tc.mta, "-c", cfg}, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.mta, code, errb.String())
		}
		for _, want := range []string{tc.connect, tc.helo, tc.comment, "[mta_macros]"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s: output lacks %q:\n%s", tc.mta, want, out.String())
			}
		}
	}
}

// check warns when the keep-alive is off and a backend's eom_timeout is
// not below the MTAs' usual content timeout.
func TestCheckWarnsAboutMTATimer(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		top, eom string
		warn     bool
	}{
		{`progress_interval = "0"`, "", true}, // default eom_timeout 300s
		{`progress_interval = "0"`, `eom_timeout = "60s"`, false},
		{"", "", false}, // keep-alive on by default
	} {
		cfg := filepath.Join(dir, "c.toml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("%s\n[[backend]]\nname = \"slow\"\nurl = \"inet:1@127.0.0.1\"\non_failure = \"accept\"\n%s\n", tc.top, tc.eom)), 0o644)
		var out, errb bytes.Buffer
		if code := run([]string{"check", "-c", cfg}, &out, &errb); code != 0 {
			t.Fatalf("%q %q: exit %d: %s", tc.top, tc.eom, code, errb.String())
		}
		got := strings.Contains(errb.String(), `warning: backend "slow": eom_timeout 5m0s is not below the usual MTA content timeout`)
		if got != tc.warn {
			t.Errorf("%q %q: warning %v, want %v:\n%s", tc.top, tc.eom, got, tc.warn, errb.String())
		}
	}
}

// mta-config sendmail writes pmult's first listen address in Sendmail's
// S= form, whatever its kind: inet:PORT@HOST, inet6:PORT@HOST (it wrote
// inet6:[::1]:7357, which Sendmail does not read), a wildcard host as
// the loopback address, unix:PATH.
func TestMTAConfigSendmailSocket(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ listen, want string }{
		{`"inet:7357@127.0.0.1"`, "S=inet:7357@127.0.0.1,"},
		{`"inet6:7357@::1"`, "S=inet6:7357@::1,"},
		{`"inet6:[::1]:7358"`, "S=inet6:7358@::1,"},
		{`":7359"`, "S=inet:7359@127.0.0.1,"},
		{`["unix:` + dir + `/p.sock", "inet:7360@127.0.0.1"]`, "S=unix:" + dir + "/p.sock,"},
	} {
		cfg := filepath.Join(dir, "pmult.toml")
		os.WriteFile(cfg, []byte("listen = "+tc.listen+"\n"), 0o644)
		var out, errb bytes.Buffer
		if code := run([]string{"mta-config", "sendmail", "-c", cfg}, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.listen, code, errb.String())
		}
		if !strings.Contains(out.String(), "INPUT_MAIL_FILTER(`pmult', `"+tc.want) {
			t.Errorf("listen = %s: want %q in\n%s", tc.listen, tc.want, out.String())
		}
	}
}
