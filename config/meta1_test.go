// meta1_test.go: the [meta1] table: a complete one, every error at once,
// unknown keys, a MeTA1-only configuration.

package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/macros"
)

func TestMeta1Table(t *testing.T) {
	cfg, err := Parse([]byte(`
listen = []
[meta1]
listen = ["inet://127.0.0.1:3333", "unix:/run/pmult/meta1.sock"]
max_sessions = 6
max_sessions_soft = 2
max_connections = 10
auth_macros = true
pmilter_debug = 5
[meta1.define_macros]
envmail = ["tls_vrfy", "{auth_type}"]
rcpt = "auth_type, auth_authen"
eom = ["msgid", "taid"]
[[backend]]
name = "mfd"
url = "unix:/run/mailfromd.sock"
log_level = "warn"
`), "m.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Meta1
	if len(cfg.Milter.ListenAddrs) != 0 || len(m.ListenAddrs) != 2 || m.ListenAddrs[0].Addr != "127.0.0.1:3333" || m.ListenAddrs[1].Network != "unix" {
		t.Errorf("listen: %+v %+v", cfg.Milter.ListenAddrs, m.ListenAddrs)
	}
	if m.MaxSessions != 6 || m.MaxSessionsSoft != 2 || m.MaxConnections != 10 || m.MacrosMax != 8 || m.PmilterDebug != 5 {
		t.Errorf("limits: %+v", m)
	}
	want := map[macros.Meta1Stage][]string{
		macros.M1Mail: {"tls_vrfy", "auth_type", "auth_authen", "auth_author"},
		macros.M1Rcpt: {"auth_type", "auth_authen"},
		macros.M1Dot:  {"msgid", "taid"},
	}
	for st := macros.Meta1Stage(0); st < macros.M1NumStages; st++ {
		if !slices.Equal(m.Macros[st], want[st]) {
			t.Errorf("%s: %q, want %q", st, m.Macros[st], want[st])
		}
	}
	if cfg.Backends[0].LogLevel != "warn" {
		t.Errorf("backend log_level %q", cfg.Backends[0].LogLevel)
	}
}

func TestMeta1Errors(t *testing.T) {
	got := parseErrors(t, `
[meta1]
listen = ["inet://127.0.0.1:3333", 5, "inet:bogus"]
max_sesions = 3
pm_macros_max = 2
pmilter_debug = 101
[meta1.define_macros]
connect = ["taid", "tls_version", "client_addr"]
helo = ["msgid"]
mail = ["hostname", "auth_type", "auth_authen"]
sideways = ["c"]
rcpt = ["nosuch"]
`)
	for _, want := range []string{
		`meta1.listen[1]: want a string`,
		`meta1.listen[2]:`,
		`unknown key "meta1.max_sesions" (did you mean "max_sessions"?)`,
		`meta1.pmilter_debug: 101 is out of range`,
		`meta1.define_macros.connect: macro taid cannot be requested before the mail stage`,
		`meta1.define_macros.connect: macro tls_version is valid only after STARTTLS`,
		`meta1.define_macros.connect: "client_addr" is provided by pmult itself`,
		`meta1.define_macros.helo: macro msgid can be requested only at the dot stage`,
		`meta1.define_macros.mail: 3 macros requested at mail, MeTA1 allows at most 2`,
		`meta1.define_macros.sideways: unknown handler "sideways"`,
		`meta1.define_macros.rcpt: unknown MeTA1 macro "nosuch"`,
	} {
		found := false
		for _, g := range got {
			if strings.Contains(g, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing error %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

func TestMeta1DefaultMax(t *testing.T) {
	got := parseErrors(t, "[meta1]\nlisten = \"inet://127.0.0.1:3333\"\nauth_macros = true\n[meta1.define_macros]\nmail = [\"hostname\", \"client_resolve\", \"tls_version\", \"tls_vrfy\", \"taid\", \"c\"]\n")
	if len(got) != 1 || !strings.Contains(got[0], "9 macros requested at mail, MeTA1 allows at most 8") {
		t.Errorf("got %q", got)
	}
}
