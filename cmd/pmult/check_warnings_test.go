// check_warnings_test.go: pmult check names the key replacing each old
// spelling, as a warning (exit status unchanged).

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckWarnsAboutOldSpellings(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.toml")
	os.WriteFile(old, []byte("listen = \"inet:127.0.0.1:7357\"\nmax_sessions = 4\n[[backend]]\nname = \"a\"\nurl = \"inet:1@localhost\"\nprotocol = 6\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", old}, &out, &errb); code != 0 {
		t.Fatalf("check of a file in the old spellings: exit %d\n%s", code, errb.String())
	}
	for _, want := range []string{
		old + `: listen: old spelling: write listen in the [milter] table instead`,
		old + `: max_sessions: old spelling: write max_connections in the [milter] table instead`,
		old + `: backend[0] "a": url: old spelling: write address instead`,
		old + `: backend[0] "a": protocol: old spelling: write milter_version instead`,
	} {
		if !strings.Contains(errb.String(), "warning: "+want) {
			t.Errorf("check lacks %q:\n%s", want, errb.String())
		}
	}
	if !strings.Contains(out.String(), "OK (1 listen address(es), 0 MeTA1 listen address(es), 1 backend(s))") {
		t.Errorf("stdout: %q", out.String())
	}
	fresh := filepath.Join(dir, "new.toml")
	os.WriteFile(fresh, []byte("[milter]\nlisten = \"inet:127.0.0.1:7357\"\nmax_connections = 4\n[[backend]]\nname = \"a\"\naddress = \"inet:1@localhost\"\nmilter_version = 6\n"), 0o644)
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "-c", fresh}, &out, &errb); code != 0 || strings.Contains(errb.String(), "warning") {
		t.Errorf("check of the new spellings: exit %d\n%s", code, errb.String())
	}
}
