// macros_test.go: macro tables and synthesis (issue 12) with real
// software: mailfromd asking for {client_addr} and {mail_addr} behind
// mtasim (which sends almost no macros), opendkim signing only when
// {daemon_name} says ORIGINATING, set by pmult's table of the submission
// listener only.

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mailmux/mailmux/internal/realpeer"
)

// startPmultConfig runs pmult on the config text cfg (listen addresses
// included) and waits for spec.
func startPmultConfig(t *testing.T, cfg, spec string) *realpeer.Process {
	t.Helper()
	path := filepath.Join(realpeer.Dir(t), "pmult.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := realpeer.StartProcess(t, "pmult", exec.Command(pmultBin, "-c", path, "--debug=debug"))
	p.WaitReady(t, spec, 10*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pmult config:\n%s\npmult log:\n%s", cfg, p.Output())
		}
	})
	return p
}

// needMacrosMFL: mailfromd asks (SMFIR_SETSYMLIST, from the macros its
// envfrom handler uses) for {client_addr} and {mail_addr} at MAIL: an
// undefined one is a runtime error (tempfail); it rejects unless
// {client_addr} is the client's address. (mtasim sends {mail_addr} itself,
// the sender's local part; the MTA's value wins over a derived one.)
const needMacrosMFL = `prog envfrom
do
  if ${client_addr} != "192.0.2.7" or ${mail_addr} = ""
    reject(550, "5.7.2", "wrong macros: " . ${client_addr} . " " . ${mail_addr})
  fi
done
`

const mtasimMacrosScript = `\S inet client.example.net 192.0.2.7 4567
\E250
ehlo client.example.net
\E250
mail from:<a@example.org>
\E250
rcpt to:<good@example.com>
\E221
quit
`

// mtasim sends no {client_addr}: straight to mailfromd, MAIL fails;
// through pmult, which derives it for the backend that asked, it is
// accepted.
func TestMacrosMtasimSynthesised(t *testing.T) {
	t.Parallel()
	realpeer.Require(t, "mtasim", "mailfromd")
	mfd := realpeer.StartMailfromd(t, needMacrosMFL)

	out, errOut, code := realpeer.RunMtasim(t, mfd, mtasimMacrosScript)
	if code == 0 {
		t.Fatalf("mtasim straight to mailfromd passed: mtasim now sends the macros, the test proves nothing:\n%s%s", out, errOut)
	}
	spec := "inet:" + strconv.Itoa(realpeer.FreePort(t)) + "@127.0.0.1"
	startPmultConfig(t, fmt.Sprintf("[milter]\nlisten = [%q]\n[[backend]]\nname = \"mfd\"\naddress = %q\n", spec, mfd), spec)
	if out, errOut, code := realpeer.RunMtasim(t, spec, mtasimMacrosScript); code != 0 {
		t.Errorf("through pmult: mtasim exit %d:\n%s%s", code, out, errOut)
	}
}
