// macros_test.go: check --live and mta-config with macro tables (issue 12).

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

func askingMilter(t *testing.T, list string) (host, port string) {
	t.Helper()
	m := &testmilter.Server{Actions: mp.ActAddHeaders | mp.ActSetSymList, Protocol: mp.ProtoNoBody,
		SymLists: []mp.SymList{{Stage: mp.StageEnvFrom, Macros: list}}}
	ba, err := m.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	host, port, _ = net.SplitHostPort(ba.String())
	return host, port
}

func TestCheckLive(t *testing.T) {
	host, port := askingMilter(t, "{client_addr} {auth_type} {nobody}")
	dir := t.TempDir()
	write := func(name, extra string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(fmt.Sprintf("[milter]\nlisten = [\"inet:127.0.0.1:7357\"]\n%s\n[[backend]]\nname = \"asks\"\naddress = \"inet:%s@%s\"\n", extra, port, host)), 0o644)
		return p
	}
	var out, errb bytes.Buffer
	code := run([]string{"check", "--live", "-c", write("starved.toml", "")}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "{nobody}=NOBODY") ||
		!strings.Contains(out.String(), "{client_addr}=pmult") || !strings.Contains(out.String(), "{auth_type}=mta-list") ||
		!strings.Contains(out.String(), "add_headers") || !strings.Contains(out.String(), "body") {
		t.Errorf("starved: exit %d, want 1, and a table naming the providers:\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	code = run([]string{"check", "--live", "-c", write("fed.toml", "[macros]\ndefault = { \"mail:{nobody}\" = \"x\" }")}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "{nobody}=table") {
		t.Errorf("fed by a table: exit %d, want 0:\n%s%s", code, out.String(), errb.String())
	}
	// An unreachable backend.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().(*net.TCPAddr)
	ln.Close()
	p := filepath.Join(dir, "dead.toml")
	os.WriteFile(p, []byte(fmt.Sprintf("[[backend]]\nname = \"gone\"\naddress = \"inet:%d@127.0.0.1\"\n", dead.Port)), 0o644)
	out.Reset()
	if code := run([]string{"check", "--live", "-c", p}, &out, &errb); code != 1 || !strings.Contains(out.String(), "gone") {
		t.Errorf("unreachable: exit %d, want 1:\n%s", code, out.String())
	}
	// Without --live, no backend is contacted: the starved file is OK.
	out.Reset()
	if code := run([]string{"check", "-c", filepath.Join(dir, "starved.toml")}, &out, &errb); code != 0 {
		t.Errorf("check without --live: exit %d", code)
	}
}

// Bad tables: check reports each problem at its place.
func TestCheckBadTables(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(p, []byte("[milter]\nlisten = [\"in=inet:127.0.0.1:7357\"]\n[macros]\nset = { \"nostage:{x}\" = \"y\" }\n[macros.listener.out]\ndrop = [1]\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", p}, &out, &errb); code != exitConfig {
		t.Errorf("exit %d, want %d", code, exitConfig)
	}
	for _, want := range []string{p + `: macros.set.nostage:{x}: unknown stage "nostage"`,
		p + `: macros.listener.out: no listener is named "out"`, p + ": macros.listener.out.drop[0]: want a string"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("lacks %q:\n%s", want, errb.String())
		}
	}
}

// mta-config postfix: the chroot-correct socket form, and macros pmult
// provides left out of the lists.
func TestMTAConfigChrootAndSynthesised(t *testing.T) {
	host, port := askingMilter(t, "{client_addr} {auth_type} {my_macro}")
	dir := t.TempDir()
	for _, tc := range []struct{ listen, want, comment string }{
		{"unix:/var/spool/postfix/pmult/pmult.sock", "smtpd_milters = unix:pmult/pmult.sock\n", "works\n# whether smtpd and cleanup run chrooted"},
		{"unix:/run/pmult/pmult.sock", "smtpd_milters = unix:/run/pmult/pmult.sock\n", "set the chroot column of smtpd"},
		{"inet:127.0.0.1:7357", "smtpd_milters = inet:127.0.0.1:7357\n", ""},
	} {
		p := filepath.Join(dir, "c.toml")
		os.WriteFile(p, []byte(fmt.Sprintf("[milter]\nlisten = [%q]\n[[backend]]\nname = \"a\"\naddress = \"inet:%s@%s\"\n", tc.listen, port, host)), 0o644)
		var out, errb bytes.Buffer
		if code := run([]string{"mta-config", "postfix", "-c", p}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		o := out.String()
		if !strings.Contains(o, tc.want) || !strings.Contains(o, tc.comment) {
			t.Errorf("%s: want %q and %q in:\n%s", tc.listen, tc.want, tc.comment, o)
		}
		if !strings.Contains(o, "milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer} {my_macro}\n") ||
			!strings.Contains(o, "Backends also ask for {client_addr}: pmult provides them") {
			t.Errorf("%s: lists:\n%s", tc.listen, o)
		}
	}
}
