package config

import (
	"strings"
	"testing"
	"time"
)

func TestMTATimeouts(t *testing.T) {
	cfg := Default()
	if cfg.NegotiateTimeout.Duration != 30*time.Second || cfg.IdleTimeout.Duration != time.Hour ||
		cfg.WriteTimeout.Duration != 30*time.Second {
		t.Errorf("defaults: negotiate %s idle %s write %s", cfg.NegotiateTimeout, cfg.IdleTimeout, cfg.WriteTimeout)
	}
	cfg = mustParse(t, "negotiate_timeout = \"5s\"\nidle_timeout = \"10m\"\nwrite_timeout = 7\n")
	if cfg.NegotiateTimeout.Duration != 5*time.Second || cfg.IdleTimeout.Duration != 10*time.Minute ||
		cfg.WriteTimeout.Duration != 7*time.Second {
		t.Errorf("set: negotiate %s idle %s write %s", cfg.NegotiateTimeout, cfg.IdleTimeout, cfg.WriteTimeout)
	}
	_, err := Parse([]byte("negotiate_timeout = \"0s\"\nidle_timeout = \"x\"\nwrite_timeout = \"-1s\"\n"), "t.toml")
	errs := Errors(err)
	if len(errs) != 3 {
		t.Fatalf("want 3 errors, got %v", errs)
	}
	for i, k := range []string{"negotiate_timeout", "idle_timeout", "write_timeout"} {
		if !strings.Contains(errs[i].Error(), k) {
			t.Errorf("error %d %q does not name %s", i, errs[i], k)
		}
	}
}
