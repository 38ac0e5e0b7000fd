// mailfromd.go: runs mailfromd (GNU Mailutils' MFL milter, gacopyz
// protocol library) as a backend milter with a test's MFL script.

package realpeer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// StartMailfromd runs "mailfromd --no-config --foreground --stderr" with the
// MFL script text mfl, listening on a free port on 127.0.0.1, with its
// state directory and pidfile in a private Dir (owned by user mailfromd,
// to which mailfromd drops privileges). extraArgs go before the script
// file name (e.g. "--trace", "--debug=10", "--no-preprocessor"). It waits
// until the milter accepts and returns its libmilter spec
// "inet:PORT@127.0.0.1" (for Postfix use PostfixMilter(spec)). A script
// that does not compile makes the test fail with mailfromd's stderr.
// mailfromd is stopped in t.Cleanup; its stderr (logs, echo output) is
// logged when the test failed.
func StartMailfromd(t testing.TB, mfl string, extraArgs ...string) (spec string) {
	t.Helper()
	Require(t, "mailfromd")
	bin := mustTool(t, "mailfromd") // full path: mailfromd warns otherwise
	dir := Dir(t)
	chownUser(t, dir, "mailfromd")
	script := filepath.Join(dir, "script.mfl")
	if err := os.WriteFile(script, []byte(mfl), 0o644); err != nil {
		t.Fatalf("realpeer: mailfromd: %v", err)
	}
	spec = "inet:" + strconv.Itoa(FreePort(t)) + "@127.0.0.1"
	args := []string{
		"--no-config", "--foreground", "--stderr",
		"--port=" + spec,
		"--state-directory=" + dir,
		"--pidfile=" + filepath.Join(dir, "mailfromd.pid"),
	}
	args = append(args, extraArgs...)
	args = append(args, script)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	p := StartProcess(t, "mailfromd", cmd)
	p.WaitReady(t, spec, 20*time.Second)
	return spec
}
