package config

import (
	"slices"
	"strings"
	"testing"

	milter "github.com/mailmux/mailmux/backends/milter"
	"github.com/mailmux/mailmux/macros"
)

func TestMacrosTables(t *testing.T) {
	cfg, err := Parse([]byte(`
[milter]
listen = ["inbound=inet:127.0.0.1:7001", "submission = unix:/run/pmult/sub.sock", "inet:127.0.0.1:7003"]

[macros]
dialect = "none"
drop = ["{b}"]
[macros.listener.submission]
set = { "connect:{daemon_name}" = "ORIGINATING" }

[[backend]]
name = "dkim"
address = "inet:8891@127.0.0.1"
[backend.macros]
rename = { "{auth_type}" = "{auth_method}" }
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"inbound", "submission", ""}; !slices.Equal(cfg.Milter.ListenNames, want) {
		t.Errorf("ListenNames %q, want %q", cfg.Milter.ListenNames, want)
	}
	if a := cfg.Milter.ListenAddrs[1]; a.Network != "unix" || a.Addr != "/run/pmult/sub.sock" {
		t.Errorf("named unix address parsed as %+v", a)
	}
	if cfg.Macros.Dialect != "none" || !slices.Equal(cfg.Macros.Global.Drop, []string{"b"}) {
		t.Errorf("global %+v", cfg.Macros)
	}
	if !cfg.Macros.Listener["submission"].Provides(macros.Connect, "daemon_name") {
		t.Errorf("listener table %+v", cfg.Macros.Listener["submission"])
	}
	if m := cfg.Backends[0].Settings.(*milter.Settings).Macros; m == nil || m.Rename["auth_type"] != "auth_method" {
		t.Errorf("backend table %+v", m)
	}
	e, err := cfg.Engine(nil)
	if err != nil || e.Macros == nil || !e.Macros.Dialect["milter"].Empty() {
		t.Errorf("engine tables %+v, %v", e.Macros, err)
	}
	// Plain files load as before, with the built-in tables.
	def := Default()
	if !slices.Equal(def.Milter.ListenNames, []string{""}) || def.Macros.Dialect != "auto" {
		t.Errorf("default %q %q", def.Milter.ListenNames, def.Macros.Dialect)
	}
	de, _ := def.Engine(nil)
	if de.Macros.Dialect["meta1"].Empty() || de.Macros.Dialect["milter"].Empty() {
		t.Error("auto: no built-in tables")
	}
}

// Every problem of the tables is reported at once, each at its place.
func TestMacrosTablesErrors(t *testing.T) {
	_, err := Parse([]byte(`
[milter]
listen = ["a=inet:127.0.0.1:7001", "a=inet:127.0.0.1:7002"]
[macros]
dialect = "exim"
rename = { "{x}" = 1 }
colour = "blue"
[macros.listener.nosuch]
set = { "later:{daemon_name}" = "X" }
[[backend]]
name = "b"
address = "inet:1@127.0.0.1"
macros = { drop = "{b}" }
`), "bad.toml")
	if err == nil {
		t.Fatal("no error")
	}
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`bad.toml: milter.listen[1]: listener name "a": same as milter.listen[0]`,
		`bad.toml: macros.dialect: unknown dialect "exim"`,
		`bad.toml: macros.rename.{x}: want a string`,
		`bad.toml: macros.colour: unknown key`,
		`bad.toml: macros.listener.nosuch: no listener is named "nosuch"`,
		`bad.toml: macros.listener.nosuch.set.later:{daemon_name}: unknown stage "later"`,
		`bad.toml: backend[0] "b": macros.drop: want an array`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
}
