// convert_test.go: the report and the result of Convert.

package mailfromd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	milter "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/config"
	"github.com/mailmux/mailmux/macros"
)

// The manual's example: converted but for the logging facility, loading
// without warnings.
func TestConvertManualExample(t *testing.T) {
	res, err := Convert("testdata/manual-example.conf")
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.Notes, "\n")
	if !res.Incomplete {
		t.Errorf("the facility local2 cannot be converted:\n%s", notes)
	}
	for _, want := range []string{
		`manual-example.conf:10: cannot convert "facility"`,
		`1 top-level statement(s) outside`,
		`approximated as log_level = "debug"`,
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("report lacks %q:\n%s", want, notes)
		}
	}
	cfg, err := config.Parse([]byte(res.TOML), "converted")
	if err != nil {
		t.Fatalf("converted file does not load: %v\n%s", err, res.TOML)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("old spellings: %v", cfg.Warnings)
	}
	ms, _ := cfg.Backends[0].Settings.(*milter.Settings)
	if ms == nil || ms.Addr.Addr != "/usr/local/var/mailfromd/mailfrom" || ms.ReadTimeout.Duration != 5*time.Minute {
		t.Errorf("backend %+v", ms)
	}
}

func TestImportReports(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.conf")
	os.WriteFile(in, []byte(`
listen unix:///run/pmult.sock;
max-threads-soft 3; max-threads-hard 12; max-pmilter-fd 20;
pidfile /run/pmult.pid;
pmilter-debug 10;
auth-macros yes;
define-macros (connect, helo) (hostname);
define-macros dot (msgid, taid);
frobnicate 7;
client dkim { type pmilter; url inet://127.0.0.1:8891; }
client { url "inet:8892@127.0.0.1"; connect-timeout 2 minutes; log-level "err, fatal"; bogus 1; }
/* comment */ logging { tag pmult-meta1; }
`), 0o644)
	res, err := Convert(in)
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.Notes, "\n")
	if !res.Incomplete {
		t.Errorf("not reported incomplete:\n%s\n%s", res.TOML, notes)
	}
	for _, want := range []string{`cannot convert "frobnicate"`, `client type "pmilter"`, `cannot convert "bogus"`} {
		if !strings.Contains(notes, want) {
			t.Errorf("report lacks %q:\n%s", want, notes)
		}
	}
	cfg, err := config.Parse([]byte(res.TOML), "out")
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML)
	}
	m := cfg.Meta1
	if m.MaxSessionsSoft != 3 || m.MaxSessions != 12 || m.MaxConnections != 20 || m.PmilterDebug != 10 || !m.AuthMacros ||
		cfg.PIDFile != "/run/pmult.pid" || cfg.LogTag != "pmult-meta1" || len(cfg.Backends) != 1 ||
		cfg.Backends[0].LogLevel != "error" || cfg.Backends[0].Name != "client2" {
		t.Errorf("converted: %+v\n%s", cfg, res.TOML)
	}
	if got := strings.Join(m.Macros[macros.M1Helo], " "); got != "hostname" {
		t.Errorf("helo macros %q", got)
	}
}
