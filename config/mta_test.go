// mta_test.go: progress_interval and [mta_macros].

package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/macros"
)

func TestMTASideDefaults(t *testing.T) {
	cfg := Default()
	if cfg.ProgressInterval.Duration != DefaultProgressInterval {
		t.Errorf("progress_interval %v, want %v", cfg.ProgressInterval, DefaultProgressInterval)
	}
	for st := macros.Stage(0); st < macros.NumStages; st++ {
		if l := cfg.MTAMacros.Stages()[st]; l != nil {
			t.Errorf("stage %s: %q, want nil (the MTA defaults)", st, l)
		}
	}
	want := macros.Union(macros.PostfixDefaults[macros.Connect], macros.SendmailDefaults[macros.Connect]...)
	if got := cfg.MTAMacros.Baseline(macros.Connect); !slices.Equal(got, want) {
		t.Errorf("connect baseline %q, want %q", got, want)
	}
}

func TestMTASideParse(t *testing.T) {
	cfg, err := Parse([]byte(`progress_interval = "0"
[mta_macros]
connect = ["j", "client_ptr", "{daemon_name}"]
helo = []
rcpt = "i, {rcpt_addr} rcpt_host"
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProgressInterval.Duration != 0 {
		t.Errorf("progress_interval %v, want 0 (off)", cfg.ProgressInterval)
	}
	st := cfg.MTAMacros.Stages()
	if want := []string{"j", "{client_ptr}", "{daemon_name}"}; !slices.Equal(st[macros.Connect], want) {
		t.Errorf("connect %q, want %q", st[macros.Connect], want)
	}
	if st[macros.Helo] == nil || len(st[macros.Helo]) != 0 {
		t.Errorf("helo %#v, want an empty (not nil) list", st[macros.Helo])
	}
	if want := []string{"i", "{rcpt_addr}", "{rcpt_host}"}; !slices.Equal(st[macros.EnvRcpt], want) {
		t.Errorf("rcpt %q, want %q", st[macros.EnvRcpt], want)
	}
	if st[macros.EnvFrom] != nil {
		t.Errorf("mail %q, want nil", st[macros.EnvFrom])
	}
	if got := cfg.MTAMacros.Baseline(macros.Helo); len(got) != 0 {
		t.Errorf("helo baseline %q, want none", got)
	}
}

func TestMTASideErrors(t *testing.T) {
	_, err := Parse([]byte(`progress_interval = "-1s"
[mta_macros]
connect = [1]
helo = 3
conect = ["j"]
`), "t.toml")
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"progress_interval", "mta_macros.connect[0]: want a string", "mta_macros.helo: want an array",
		`unknown key "mta_macros.conect" (did you mean "connect"?)`} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q:\n%s", want, all)
		}
	}
	if len(msgs) != 4 {
		t.Errorf("%d errors, want 4:\n%s", len(msgs), all)
	}
}
