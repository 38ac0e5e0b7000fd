// cond_test.go: mta-config postfix prints the master.cf override of each
// named listener (issue 11), and check reports bad conditions (exit 78).

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMTAConfigListeners(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pmult.toml")
	os.WriteFile(p, []byte(`[milter]
listen = ["inbound=inet:127.0.0.1:7001", "submission=inet:127.0.0.1:7002"]
[[backend]]
name = "a"
address = "inet:1@localhost"
[backend.if]
listener = "inbound"
`), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"mta-config", "postfix", "-c", p}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"listener inbound (inet:127.0.0.1:7001)", "-o smtpd_milters=inet:127.0.0.1:7001",
		"listener submission (inet:127.0.0.1:7002)", "-o smtpd_milters=inet:127.0.0.1:7002"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
}

func TestCheckBadCondition(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pmult.toml")
	os.WriteFile(p, []byte(`[[backend]]
name = "a"
address = "inet:1@localhost"
[backend.if]
client_file = "`+filepath.Join(dir, "nets")+`"
helo_regex = "("
`), 0o644)
	var out, errb bytes.Buffer
	code := run([]string{"check", "-c", p}, &out, &errb)
	all := out.String() + errb.String()
	if code != exitConfig || !strings.Contains(all, `backend[0] "a": if.client_file: open `) ||
		!strings.Contains(all, `backend[0] "a": if.helo_regex: bad regular expression`) {
		t.Errorf("exit %d:\n%s", code, all)
	}
}
