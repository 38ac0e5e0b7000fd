// callout_admin_test.go: pmult callout-cache on the embedded bbolt cache
// of a running pmult (over its control socket), real Postfix in front: a
// cached negative, flushed through the running pmult, and the next MAIL
// probes again; once pmult has stopped, the same command opens the file.

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

func TestCalloutCacheAdminLive(t *testing.T) {
	realpeer.Require(t, "postfix", "swaks")
	w := startSAVWorld(t)
	dir := realpeer.Dir(t)
	sock := filepath.Join(dir, "pmult.ctl")
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	cfg := filepath.Join(dir, "pmult.toml")
	text := fmt.Sprintf("listen = [%q]\nshutdown_timeout = \"2s\"\ncontrol_socket = %q\n[[backend]]\nname = \"sav\"\ntype = \"callout\"\n%scache_file = %q\n",
		spec, sock, w.keys(), filepath.Join(dir, "sav.db"))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p := realpeer.StartProcess(t, "pmult", exec.Command(pmultBin, "-c", cfg, "--debug=debug"))
	p.WaitReady(t, spec, 10*time.Second)
	logPmultOnFailure(t, p)
	pf := realpeer.StartPostfix(t, realpeer.PostfixOptions{Milters: realpeer.PostfixMilter(spec)})
	admin := func(args ...string) (string, int) {
		out, err := exec.Command(pmultBin, append([]string{"callout-cache", "-c", cfg}, args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}

	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v, want mode 0600", fi.Mode(), err)
	}
	for i := 0; i < 2; i++ { // probed, then from the cache
		if got := mailReply(sendFrom(t, pf, "bad@ok.test")); !strings.Contains(got, "550 5.1.7 ") {
			t.Fatalf("MAIL FROM:<bad@ok.test> #%d: %q", i+1, got)
		}
	}
	probes := w.ok.Connections()
	if probes != 1 {
		t.Errorf("%d probes of ok.test, want 1 (the second answered from the cache)", probes)
	}
	out, code := admin("list")
	if code != 0 || !strings.Contains(out, "address   bad@ok.test not_found stored ") || !strings.Contains(out, "a probe answered not_found") ||
		!strings.Contains(out, "1 entries") {
		t.Fatalf("list through the running pmult: exit %d\n%s", code, out)
	}
	liveLine := logLine(out, "bad@ok.test not_found")
	if out, code := admin("show", "ok.test"); code != 0 || !strings.Contains(out, "bad@ok.test not_found") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
	if out, code := admin("flush", "bad@ok.test"); code != 0 || !strings.Contains(out, "flushed 1 entries") {
		t.Errorf("flush: exit %d\n%s", code, out)
	}
	if out, code := admin("flush"); code != 64 || !strings.Contains(out, "usage: pmult callout-cache") {
		t.Errorf("flush without argument: exit %d\n%s", code, out)
	}
	if got := mailReply(sendFrom(t, pf, "bad@ok.test")); !strings.Contains(got, "550 5.1.7 ") {
		t.Errorf("MAIL after the flush: %q", got)
	}
	if w.ok.Connections() != probes+1 {
		t.Errorf("the MAIL after the flush did not probe again (%d probes, %d before)", w.ok.Connections(), probes)
	}
	if l := waitLogLine(p, 5*time.Second, "control socket: callout-cache", "backend=sav", `args="flush bad@ok.test"`); l == "" {
		t.Errorf("the flush was not logged")
	}

	// pmult stopped: the same command opens the file, same format.
	p.Stop()
	out, code = admin("list")
	fileLine := logLine(out, "bad@ok.test not_found")
	if code != 0 || fileLine == "" {
		t.Fatalf("list from the file: exit %d\n%s", code, out)
	}
	cut := func(l string) string { return l[:strings.Index(l, " stored ")] }
	if cut(fileLine) != cut(liveLine) {
		t.Errorf("formats differ:\nlive: %s\nfile: %s", liveLine, fileLine)
	}
}
