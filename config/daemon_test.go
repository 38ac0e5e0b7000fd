package config

import (
	"strings"
	"testing"
)

// user, group and the socket keys: defaults, both spellings of a mode,
// and every bad value reported at once.
func TestDaemonKeys(t *testing.T) {
	cfg := mustParse(t, "")
	if cfg.User != "" || cfg.Group != "" || cfg.SocketOwner != "" || cfg.SocketGroup != "" || cfg.SocketMode != 0o666 {
		t.Errorf("defaults: %q %q %q %q %o", cfg.User, cfg.Group, cfg.SocketOwner, cfg.SocketGroup, cfg.SocketMode)
	}
	cfg = mustParse(t, "user = \"pmult\"\ngroup = \"mail\"\nsocket_owner = \"0\"\nsocket_group = \"postfix\"\nsocket_mode = \"0660\"\n")
	if cfg.User != "pmult" || cfg.Group != "mail" || cfg.SocketOwner != "0" || cfg.SocketGroup != "postfix" || cfg.SocketMode != 0o660 {
		t.Errorf("parsed: %q %q %q %q %o", cfg.User, cfg.Group, cfg.SocketOwner, cfg.SocketGroup, cfg.SocketMode)
	}
	if cfg := mustParse(t, "socket_mode = 0o640\n"); cfg.SocketMode != 0o640 {
		t.Errorf("TOML octal: %o", cfg.SocketMode)
	}
	got := strings.Join(parseErrors(t, "group = \"mail\"\nsocket_owner = \"a b\"\nsocket_group = 5\nsocket_mode = 660\n"), "\n")
	for _, want := range []string{"group without user", `"a b" is not a user or group name`, "socket_group", "660 is not a mode"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	got = strings.Join(parseErrors(t, "socket_mode = \"0999\"\nuser = \"\"\n"), "\n")
	if !strings.Contains(got, "not an octal mode") || !strings.Contains(got, "user: empty") {
		t.Errorf("bad octal: %s", got)
	}
}
