// max_body_test.go: the per-backend max_body key.

package config

import (
	"slices"
	"strings"
	"testing"
)

func TestMaxBody(t *testing.T) {
	cfg, err := Parse([]byte(`
max_message = 1000000
[[backend]]
name = "a"
url = "inet:1@localhost"
[[backend]]
name = "b"
url = "inet:2@localhost"
max_body = 200000
`), "config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := []int{milterSettings(t, cfg.Backends[0]).MaxBody, milterSettings(t, cfg.Backends[1]).MaxBody}; !slices.Equal(got, []int{1000000, 200000}) {
		t.Errorf("max_body %v, want [1000000 200000] (the default is max_message)", got)
	}
	if cfg := Default(); cfg.MaxMessage != DefaultMaxMessage {
		t.Fatalf("default max_message %d", cfg.MaxMessage)
	}
	got := parseErrors(t, `
[[backend]]
name = "a"
url = "inet:1@localhost"
max_body = 100
[[backend]]
name = "b"
url = "inet:2@localhost"
max_body = "big"
`)
	want := []string{
		`config.toml: backend[0] "a": max_body: 100 is too small (minimum 65536)`,
		`config.toml: backend[1] "b": max_body: want an integer, not a TOML string`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
