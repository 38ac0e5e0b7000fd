// cond_mtasim_test.go: mailfromd's MTA simulator (mtasim 8.15) drives pmult
// with the rule filter as its only backend (no remote milter at all): a
// header_checks / access(5) replacement that answers per recipient; our
// own mtasim (cmd/mtasim, --show-edits) shows the filter's header edits,
// which mailfromd's mtasim never prints.

package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mailmux/mailmux/internal/realpeer"
)

var (
	ourMtasimOnce sync.Once
	ourMtasimPath string
	ourMtasimErr  error
)

// ourMtasim builds cmd/mtasim once, next to the pmult binary.
func ourMtasim(t *testing.T) string {
	t.Helper()
	ourMtasimOnce.Do(func() {
		ourMtasimPath = filepath.Join(filepath.Dir(pmultBin), "mtasim")
		out, err := exec.Command("go", "build", "-o", ourMtasimPath, "github.com/mailmux/mailmux/cmd/mtasim").CombinedOutput()
		if err != nil {
			ourMtasimErr = fmt.Errorf("build cmd/mtasim: %v\n%s", err, out)
		}
	})
	if ourMtasimErr != nil {
		t.Fatal(ourMtasimErr)
	}
	return ourMtasimPath
}

// filterOnlyConfig: the filter alone, as access(5) and header_checks(5)
// would be written: per-recipient answers, a header rule, header edits.
const filterOnlyConfig = `[milter]
listen = [%q]
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
match = { rcpt = ["nobody@example.com", "gone@example.com"] }
action = "reject"
code = "550"
xcode = "5.1.1"
text = "no such user here"
[[backend.rule]]
match = { rcpt_domain = "busy.example" }
action = "tempfail"
code = "451"
xcode = "4.2.1"
text = "mailbox busy, try later"
[[backend.rule]]
match = { header_regex = { Subject = "(?i)viagra" } }
action = "reject"
text = "message content rejected"
[[backend.rule]]
action = "delete_header"
name = "Authentication-Results"
value_regex = '^\s*mx\.example\.com;'
[[backend.rule]]
match = { rcpt_domain = "example.com" }
action = "add_header"
name = "X-Filtered"
value = "by ${j}"
`

// mtasimFilterScript: accepted, rejected, tempfailed, rejected again and
// accepted recipients, then a message with a forged Authentication-Results.
const mtasimFilterScript = `\S inet client.example.net 192.0.2.7 4567
\E250
ehlo client.example.net
\E250
mail from:<a@example.org>
\E250
rcpt to:<good@example.com>
\E550
rcpt to:<nobody@example.com>
\E451
rcpt to:<x@busy.example>
\E550
rcpt to:<gone@example.com>
\E250
rcpt to:<other@example.net>
\E354
data
Authentication-Results: mx.example.com; spf=pass
Subject: through the filter
From: a@example.org

hello from mtasim
.
\E221
quit
`

func TestCondMtasimDrivesFilter(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim")
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	p := startPmultConfig(t, fmt.Sprintf(filterOnlyConfig, spec), spec)

	// mailfromd's mtasim: every per-recipient answer as expected, and the
	// message accepted.
	stdout, stderr, code := realpeer.RunMtasim(t, spec, mtasimFilterScript)
	if code != realpeer.MtasimOK {
		t.Fatalf("mtasim exit %d, want %d\nstdout:\n%s\nstderr:\n%s\npmult:\n%s", code, realpeer.MtasimOK, stdout, stderr, p.Output())
	}
	stdout = strings.ReplaceAll(stdout, "\r\n", "\n")
	for _, want := range []string{"550 5.1.1 no such user here", "451 4.2.1 mailbox busy, try later",
		"354 Enter mail, end with \".\" on a line by itself\n250 Mail accepted for delivery\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("mtasim stdout lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "550 5.1.1 no such user here"); n != 2 {
		t.Errorf("%d rejections of a listed recipient, want 2 (each one answered):\n%s", n, stdout)
	}
	// A wrong expectation fails: the second listed recipient expected to pass.
	bad := strings.Replace(mtasimFilterScript, "\\E550\nrcpt to:<gone@", "\\E250\nrcpt to:<gone@", 1)
	if bad == mtasimFilterScript {
		t.Fatal("script not changed")
	}
	if _, _, code := realpeer.RunMtasim(t, spec, bad); code != realpeer.MtasimExpectFail {
		t.Errorf("mtasim with a wrong expectation: exit %d, want %d", code, realpeer.MtasimExpectFail)
	}

	// Our mtasim shows the edits: the forged header deleted, X-Filtered
	// added (the message has example.com recipients), macro expanded.
	mt := ourMtasim(t)
	cmd := exec.Command(mt, "--stdio", "--show-edits", "--hostname", "mx.test.example", "--port="+spec)
	cmd.Stdin = strings.NewReader(mtasimFilterScript)
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("our mtasim: %v\n%s\npmult:\n%s", err, res, p.Output())
	}
	got := strings.ReplaceAll(string(res), "\r\n", "\n")
	for _, want := range []string{"550 5.1.1 no such user here", "451 4.2.1 mailbox busy, try later",
		"edit: delete header Authentication-Results[1]", "edit: add header X-Filtered: by mx.test.example"} {
		if !strings.Contains(got, want) {
			t.Errorf("our mtasim output lacks %q:\n%s", want, got)
		}
	}

	// header_checks: a header rule rejects the message at end of data.
	spam := strings.Replace(mtasimFilterScript, "Subject: through the filter", "Subject: cheap VIAGRA", 1)
	cmd = exec.Command(mt, "--stdio", "--show-edits", "--port="+spec)
	cmd.Stdin = strings.NewReader(spam)
	res, _ = cmd.CombinedOutput()
	got = strings.ReplaceAll(string(res), "\r\n", "\n")
	if !strings.Contains(got, "550 5.7.1 message content rejected") || strings.Contains(got, "edit: ") {
		t.Errorf("spam: want the header rule's rejection and no edit:\n%s", got)
	}
}
