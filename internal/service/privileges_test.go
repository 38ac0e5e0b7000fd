// privileges_test.go: resolving the accounts, the permission check of a
// directory, what a reload cannot change. (The switch itself is tested
// through the binary: cmd/pmult's TestPrivilegeDropAsRoot.)

package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/config"
)

func parseConfig(t *testing.T, s string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(s), "t")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolveIdentity(t *testing.T) {
	id, err := ResolveIdentity(parseConfig(t, ""))
	if err != nil || id.Switch() || id.perm() != defaultPerm {
		t.Errorf("no keys: %+v %v", id, err)
	}
	// By name and by number; socket ownership defaults to user and group.
	id, err = ResolveIdentity(parseConfig(t, "user = \"nobody\"\ngroup = \"0\"\nsocket_mode = \"0600\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "nobody" || id.UID == 0 || id.GID != 0 || id.SocketUID != id.UID || id.SocketGID != 0 || id.SocketMode != 0o600 {
		t.Errorf("user nobody, group 0: %+v", id)
	}
	if id.Groups[0] != 0 {
		t.Errorf("groups %v: the primary group first", id.Groups)
	}
	id, err = ResolveIdentity(parseConfig(t, "user = \"0\"\nsocket_owner = \"nobody\"\n"))
	if err != nil || id.User != "root" || id.SocketUID == 0 || id.SocketGID != 0 {
		t.Errorf("user 0, socket_owner nobody: %+v %v", id, err)
	}
	// Every unknown account at once.
	_, err = ResolveIdentity(parseConfig(t, "user = \"no-such-pmult-user\"\ngroup = \"no-such-pmult-group\"\nsocket_owner = \"no-such-owner\"\n"))
	for _, want := range []string{"user: no account", "group: no group", "socket_owner: no account"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("unknown accounts: %v, want %q", err, want)
		}
	}
}

func TestWritableBy(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if !writableBy(dir, 0, nil) || writableBy(dir, 65534, []int{65534}) {
		t.Error("0755 directory owned by the test's user")
	}
	os.Chmod(dir, 0o1777)
	if !writableBy(dir, 65534, nil) {
		t.Error("1777 directory")
	}
	if writableBy(filepath.Join(dir, "missing"), 0, nil) {
		t.Error("missing directory")
	}
}

func TestAccountChangedNeedsRestart(t *testing.T) {
	base := parseConfig(t, "user = \"nobody\"\n")
	for cfg, want := range map[string]bool{
		"user = \"nobody\"\n":                      false,
		"user = \"nobody\"\ngroup = \"nogroup\"\n": true,
		"": true,
		"user = \"nobody\"\nsocket_mode = \"0660\"\n":  true,
		"user = \"nobody\"\nsocket_group = \"mail\"\n": true,
	} {
		if got := accountChanged(base, parseConfig(t, cfg)); got != want {
			t.Errorf("%q: changed %v, want %v", cfg, got, want)
		}
	}
}
