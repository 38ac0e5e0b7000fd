// require.go: checks that the real tools the tests run are installed, and
// finds their paths (Require, ToolPath).

package realpeer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// PythonPath is the interpreter that can import pymilter. On Debian only the
// system python3 has the python3-milter module; a python3 earlier on PATH
// (pyenv and the like) cannot import Milter.
const PythonPath = "/usr/bin/python3"

// InstallScript is the script that installs every tool Require knows.
const InstallScript = "scripts/install-test-deps.sh"

// knownTools maps a tool name accepted by Require to the executables it
// needs. "pymilter" (an import check), "sendmail" (the private copy in
// SendmailCacheDir, fetched when missing) and "exim" (the private copy in
// EximCacheDir, fetched when missing, and unshare) are special-cased.
var knownTools = map[string][]string{
	"postfix":         {"postfix", "postqueue", "postconf", "/usr/lib/postfix/sbin/master"},
	"swaks":           {"swaks"},
	"mailfromd":       {"mailfromd"},
	"mtasim":          {"mtasim"},
	"calloutd":        {"calloutd"},
	"opendkim":        {"opendkim"},
	"opendkim-genkey": {"opendkim-genkey"},
	"redis-server":    {"redis-server"},
	"smtp-source":     {"smtp-source"},
}

// AllTools lists every tool name Require accepts besides plain executables.
var AllTools = []string{"postfix", "swaks", "mailfromd", "mtasim", "calloutd",
	"pymilter", "opendkim", "opendkim-genkey", "redis-server", "smtp-source", "sendmail", "exim"}

var (
	pyOnce sync.Once
	pyErr  error
)

// ToolPath returns the absolute path of an executable, looking in PATH and
// then in /usr/sbin, /usr/bin, /sbin and /bin (PATH may lack the sbin
// directories). Absolute names are checked as given.
func ToolPath(name string) (string, error) {
	if filepath.IsAbs(name) {
		if isExec(name) {
			return name, nil
		}
		return "", fmt.Errorf("%s: not found or not executable", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH or /usr/sbin, /usr/bin, /sbin, /bin", name)
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func checkPymilter() error {
	pyOnce.Do(func() {
		if !isExec(PythonPath) {
			pyErr = fmt.Errorf("%s not found", PythonPath)
			return
		}
		out, err := exec.Command(PythonPath, "-c", "import Milter, milter").CombinedOutput()
		if err != nil {
			pyErr = fmt.Errorf("%s cannot import Milter (package python3-milter): %v: %s",
				PythonPath, err, strings.TrimSpace(string(out)))
		}
	})
	return pyErr
}

// checkTool reports why a tool is unusable, or nil.
func checkTool(name string) error {
	if name == "pymilter" || name == "python3-milter" {
		return checkPymilter()
	}
	if name == "sendmail" {
		_, err := sendmailRoot()
		return err
	}
	if name == "exim" {
		if _, err := eximRoot(); err != nil {
			return eximProblem(EximCacheDir, err)
		}
		_, err := ToolPath("unshare") // StartExim runs it in a mount namespace of its own
		return err
	}
	exes, ok := knownTools[name]
	if !ok {
		exes = []string{name}
	}
	for _, e := range exes {
		if _, err := ToolPath(e); err != nil {
			return err
		}
	}
	return nil
}

// eximProblem says what is wrong with the private Exim in cache.
func eximProblem(cache string, err error) error {
	return fmt.Errorf("no usable private Exim (Debian's %s, unpacked in %s): %w", eximPackage, cache, err)
}

// Require fails the test (t.Fatalf, never Skip) unless every named tool is
// installed. Names: "postfix" (with postqueue, postconf and the master
// daemon), "swaks", "mailfromd", "mtasim", "calloutd", "pymilter" (Debian's
// /usr/bin/python3 can import Milter), "opendkim", "opendkim-genkey",
// "redis-server", "smtp-source", "sendmail" (a private Sendmail 8.17 in
// SendmailCacheDir that runs: unpacked from Debian's packages, downloaded
// with apt-get the first time; the system's /usr/sbin/sendmail is
// Postfix's), "exim" (a private Exim 4 in EximCacheDir, unpacked from
// Debian's exim4-daemon-light, downloaded with apt-get the first time, and
// unshare to run it), or any other executable name. With no names it
// checks all of AllTools. The failure names InstallScript, which prepares
// all of them.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if len(tools) == 0 {
		tools = AllTools
	}
	var missing []string
	for _, name := range tools {
		if err := checkTool(name); err != nil {
			missing = append(missing, fmt.Sprintf("  %s: %v", name, err))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("realpeer: required test tools are missing:\n%s\n"+
			"Install them (as root, Debian 12) with: sh %s\n"+
			"(the end-to-end tests run real Postfix, mailfromd, pymilter etc. and do not skip when they are absent)",
			strings.Join(missing, "\n"), InstallScript)
	}
}

// mustTool returns the path of an executable or fails the test with the
// same advice as Require.
func mustTool(t testing.TB, name string) string {
	t.Helper()
	p, err := ToolPath(name)
	if err != nil {
		t.Fatalf("realpeer: %v\nInstall the test tools (as root) with: sh %s", err, InstallScript)
	}
	return p
}
