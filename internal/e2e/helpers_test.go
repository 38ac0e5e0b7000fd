// helpers_test.go: builds the pmult binary once and starts it on a config.

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

var pmultBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pmultBin = filepath.Join(dir, "pmult")
	out, err := exec.Command("go", "build", "-o", pmultBin, "github.com/mailmux/mailmux/cmd/pmult").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build pmult: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// backend is one [[backend]] of a test config.
type backend struct {
	name, spec string
	extra      string // more TOML lines
}

// pmult runs the binary on a config with the given backends; it returns
// the Sendmail-style spec MTAs connect to and the process (for its log).
func startPmult(t *testing.T, top string, bs ...backend) (string, *realpeer.Process) {
	t.Helper()
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	return startPmultAt(t, spec, top, bs...)
}

// startPmultAt is startPmult listening on spec (a libmilter spec such as
// "unix:/path"; a unix socket must be in a realpeer.Dir for Postfix to
// reach it).
func startPmultAt(t *testing.T, spec, top string, bs ...backend) (string, *realpeer.Process) {
	t.Helper()
	dir := realpeer.Dir(t)
	var b strings.Builder
	fmt.Fprintf(&b, "listen = [%q]\nshutdown_timeout = \"2s\"\n%s\n", spec, top)
	for _, be := range bs {
		fmt.Fprintf(&b, "[[backend]]\nname = %q\nurl = %q\nconnect_timeout = \"5s\"\n%s\n", be.name, be.spec, be.extra)
	}
	cfg := filepath.Join(dir, "pmult.toml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pmultBin, "-c", cfg, "--debug=debug")
	p := realpeer.StartProcess(t, "pmult", cmd)
	p.WaitReady(t, spec, 10*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pmult config:\n%s", b.String())
		}
	})
	return spec, p
}

func byRecipient(ds []realpeer.Delivered) map[string]realpeer.Delivered {
	m := map[string]realpeer.Delivered{}
	for _, d := range ds {
		m[d.Recipient] = d
	}
	return m
}

func describe(ds []realpeer.Delivered) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "--- %s (Return-Path %s)\n%s\n", d.Recipient, d.ReturnPath, d.Raw)
	}
	return b.String()
}

// visibleHeaders is a delivered message's header list without the
// headers that differ between runs (trace, ids, dates).
func visibleHeaders(d realpeer.Delivered) []string {
	var out []string
	for _, h := range d.Headers {
		switch strings.ToLower(h[0]) {
		case "received", "return-path", "delivered-to", "date", "message-id", "x-mailer", "x-original-to":
			continue
		}
		out = append(out, h[0]+":"+h[1])
	}
	return out
}

func pyEvents(t *testing.T, log func() []string) []realpeer.PyEvent {
	t.Helper()
	evs, err := realpeer.ParsePyEvents(log())
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
