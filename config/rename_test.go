package config

import (
	"slices"
	"strings"
	"testing"
)

// The new spellings load without warnings; an old and a new spelling of
// one key together, an unknown type and unknown [milter] keys are errors.
func TestRenamedKeys(t *testing.T) {
	cfg := mustParse(t, `
[milter]
listen = "inet:127.0.0.1:7000"
max_connections = 7
max_packet = 100000
[[backend]]
name = "a"
address = "inet:1@localhost"
milter_version = 4
`)
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	if m := cfg.Milter; m.MaxConnections != 7 || m.MaxPacket != 100000 || len(m.ListenAddrs) != 1 || m.ListenAddrs[0].Addr != "127.0.0.1:7000" {
		t.Errorf("[milter]: %+v", m)
	}
	if ms := milterSettings(t, cfg.Backends[0]); ms.MilterVersion != 4 || ms.Addr.Addr != "localhost:1" || ms.Old != nil {
		t.Errorf("backend: %+v", ms)
	}
	e, err := cfg.Engine(nil)
	if err != nil || len(e.Slots) != 1 || e.Slots[0].Backend.Name() != "a" {
		t.Errorf("Engine: %v %v", e, err)
	}

	got := parseErrors(t, `
listen = "inet:127.0.0.1:7000"
max_sessions = 3
[milter]
listen = "inet:127.0.0.1:7001"
max_connections = 7
max_conections = 1
[[backend]]
name = "a"
url = "inet:1@localhost"
address = "inet:1@localhost"
protocol = 6
milter_version = 6
[[backend]]
name = "b"
type = "spamfilter"
address = "inet:1@localhost"
adress = "x"
`)
	want := []string{
		`config.toml: unknown key "milter.max_conections" (did you mean "max_connections"?)`,
		`config.toml: backend[1] "b": unknown key "backend.adress" (did you mean "address"?)`,
		`config.toml: max_sessions: top-level max_sessions is the old spelling of milter.max_connections: keep [milter] max_connections only`,
		`config.toml: listen: top-level listen is the old spelling of milter.listen: keep [milter] listen only`,
		`config.toml: backend[0] "a": url: url is the old spelling of address: keep address only`,
		`config.toml: backend[0] "a": protocol: protocol is the old spelling of milter_version: keep milter_version only`,
		`config.toml: backend[1] "b": type: unknown backend type "spamfilter" (want milter, callout or filter)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The example configurations of pmult load, in the new spellings.
func TestExamplesUseNewSpellings(t *testing.T) {
	for _, f := range []string{"demo.toml", "meta1.toml", "postfix.toml", "sendmail.toml"} {
		cfg, err := Load("../examples/" + f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(cfg.Warnings) != 0 {
			t.Errorf("%s: %v", f, cfg.Warnings)
		}
	}
}
