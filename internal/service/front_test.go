// front_test.go: which reloaded settings need a restart.

package service

import (
	"testing"

	"github.com/mailmux/mailmux/config"
)

func TestFrontChanged(t *testing.T) {
	parse := func(s string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte(s), "t")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse("[mta_macros]\nconnect = [\"j\"]\n")
	for _, tc := range []struct {
		cfg  string
		want bool
	}{
		{"[mta_macros]\nconnect = [\"j\"]\n", false},
		{"[mta_macros]\nconnect = [\"j\", \"{client_ptr}\"]\n", true},
		{"[mta_macros]\nconnect = [\"j\"]\nhelo = []\n", true},
		{"progress_interval = \"0\"\n[mta_macros]\nconnect = [\"j\"]\n", true},
	} {
		if got := frontChanged(base, parse(tc.cfg)); got != tc.want {
			t.Errorf("%q: changed %v, want %v", tc.cfg, got, tc.want)
		}
	}
}
