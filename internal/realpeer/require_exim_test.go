// require_exim_test.go: Require knows "exim", the private Exim StartExim
// runs (not an executable on PATH).

package realpeer

import (
	"strings"
	"testing"
)

// TestRequireExim checks that Require(t, "exim") accepts the private Exim
// in EximCacheDir (preparing it when missing, as StartExim does), and that
// "exim" is among AllTools, so a plain Require(t) checks it too.
func TestRequireExim(t *testing.T) {
	f := &fatalRecorder{TB: t}
	Require(f, "exim")
	if f.msg != "" {
		t.Errorf("Require(t, \"exim\") failed:\n%s", f.msg)
	}
	found := false
	for _, name := range AllTools {
		found = found || name == "exim"
	}
	if !found {
		t.Errorf("AllTools %v has no exim", AllTools)
	}
}

// TestRequireEximMissingAdvice checks what Require says when the private
// Exim cannot be prepared (here: a cache directory that cannot be made):
// the package, the cache directory, the cause and the script that
// prepares it.
func TestRequireEximMissingAdvice(t *testing.T) {
	cache := "/dev/null/mailmux-exim"
	_, err := prepareExim(cache)
	if err == nil {
		t.Fatalf("prepareExim(%s) succeeded", cache)
	}
	msg := eximProblem(cache, err).Error()
	for _, want := range []string{"exim4-daemon-light", cache, "not a directory", "sh " + InstallScript} {
		if !strings.Contains(msg, want) {
			t.Errorf("exim problem %q does not say %q", msg, want)
		}
	}
}
