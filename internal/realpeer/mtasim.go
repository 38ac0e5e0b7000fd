// mtasim.go: runs mailfromd's MTA simulator, mtasim, against a milter with
// an SMTP/expect script on stdin.

package realpeer

import (
	"testing"
	"time"
)

// Exit codes of mtasim 8.15.
const (
	MtasimOK          = 0  // every \E expectation held
	MtasimExpectFail  = 1  // an \E expectation failed
	MtasimUnreachable = 69 // the milter could not be reached
)

// RunMtasim runs "mtasim --stdio --port=SPEC --milter-timeout=C=3
// extraArgs..." with script on stdin and returns its stdout, stderr and exit code (-1 if it could not
// run or was killed after 60 s). spec is a milter socket spec such as
// "inet:PORT@127.0.0.1". Script lines are SMTP commands and mtasim
// statements: "\E250" expects the reply to the NEXT SMTP command to start
// with 250 (not the greeting); "\D name=value" defines macros (put it
// before the first SMTP command); "\S inet host addr port" sets the
// client address the milter's connect sees. '#' lines are sent as SMTP
// commands, not ignored. The connect timeout C=3 (seconds; give your own
// --milter-timeout to change it) matters: mtasim 8.15 retries a refused
// TCP connect in a busy loop until that timeout, 5 minutes by default,
// before exiting with MtasimUnreachable. mtasim cannot apply CHGFROM or QUARANTINE (it
// answers 451 4.3.2) and never prints what the milter changed.
func RunMtasim(t testing.TB, spec string, script string, extraArgs ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	Require(t, "mtasim")
	args := []string{"--stdio", "--port=" + spec}
	if !hasFlag(extraArgs, "--milter-timeout") {
		args = append(args, "--milter-timeout=C=3")
	}
	args = append(args, extraArgs...)
	if script == "" {
		script = "\n"
	}
	r := runCmd(60*time.Second, script, mustTool(t, "mtasim"), args...)
	if r.exitCode < 0 {
		t.Logf("realpeer: mtasim did not finish: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	return r.stdout, r.stderr, r.exitCode
}
