// config_load_test.go: a [[backend]] of type "callout" through the config
// package: the example file loads, keys are checked against this
// package's, and errors of several keys come at once.

package callout_test

import (
	"strings"
	"testing"

	callout "github.com/mailmux/mailmux/backends/callout"
	"github.com/mailmux/mailmux/config"
)

func TestExampleLoads(t *testing.T) {
	cfg, err := config.Load("../../examples/callout.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	s, ok := cfg.Backends[0].Settings.(*callout.Settings)
	if !ok || cfg.Backends[0].Type != "callout" {
		t.Fatalf("backend 0 is %T %q", cfg.Backends[0].Settings, cfg.Backends[0].Type)
	}
	if s.Sender.Verdicts[callout.OutFailure].Text != "550 5.1.0 Sender validity not confirmed" ||
		s.Sender.Verdicts[callout.OutNotFound].Text != "550 5.1.7 Sender address rejected: undeliverable address" {
		t.Errorf("verdicts %+v", s.Sender.Verdicts)
	}
}

func TestConfigKeysChecked(t *testing.T) {
	_, err := config.Parse([]byte(`
[[backend]]
name = "sav"
type = "callout"
verdict_not_fund = "tag"
probe_mode = "hostonly"
cache = "redis"
`), "c.toml")
	var lines []string
	for _, e := range config.Errors(err) {
		lines = append(lines, e.Error())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		`unknown key "backend.verdict_not_fund" (did you mean "verdict_not_found"?)`,
		`probe_host: probe_mode "hostonly" needs probe_host`,
		`redis_url: missing`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}
