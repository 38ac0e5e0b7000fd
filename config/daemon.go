// daemon.go: the keys about running pmult as a system daemon: the
// account it drops to after binding its sockets and the owner, group and
// mode of its unix sockets.
//
//	user = "pmult"          # after binding: setgroups, setgid, setuid (pmult started as root)
//	group = "pmult"         # default: user's primary group
//	socket_owner = "pmult"  # unix sockets' owner; default: user, else unchanged
//	socket_group = "postfix" # unix sockets' group; default: group, else unchanged
//	socket_mode = "0660"    # unix sockets' mode (octal string or 0o660); default "0666"
//
// The names are checked here for their syntax only (a name or a numeric
// id); internal/service resolves them on the host it runs on (pmult check
// does too), so a file loads anywhere.

package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultSocketMode is socket_mode's default: the MTA runs as another
// user and must be able to connect.
const DefaultSocketMode = 0o666

// accountName checks a user or group name: a number, or a name without
// spaces, colons or a leading dash.
func accountName(s string) error {
	if s == "" {
		return errors.New("empty (leave the key out instead)")
	}
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		return nil
	}
	if strings.HasPrefix(s, "-") || strings.ContainsAny(s, " \t:/\n") {
		return fmt.Errorf("%q is not a user or group name", s)
	}
	return nil
}

// daemon validates user, group and the socket keys (Config.User,
// Group, SocketOwner, SocketGroup, SocketMode).
func (v *validator) daemon(cfg *Config, raw *rawConfig) {
	top := scope{v: v, backend: -1}
	d := cfg
	d.SocketMode = DefaultSocketMode
	name := func(field string, val any) string {
		if val == nil {
			return ""
		}
		s := top.str(field, val)
		if _, ok := val.(string); ok {
			if err := accountName(s); err != nil {
				top.fail(field, err)
				return ""
			}
		}
		return s
	}
	d.User = name("user", raw.User)
	d.Group = name("group", raw.Group)
	d.SocketOwner = name("socket_owner", raw.SocketOwner)
	d.SocketGroup = name("socket_group", raw.SocketGroup)
	if d.Group != "" && raw.User == nil {
		top.fail("group", errors.New("group without user: set user too (group is the group pmult switches to with it)"))
	}
	switch m := raw.SocketMode.(type) {
	case nil:
	case string:
		n, err := strconv.ParseUint(strings.TrimPrefix(m, "0o"), 8, 32)
		if err != nil || n > 0o777 {
			top.fail("socket_mode", fmt.Errorf("%q is not an octal mode from 0 to 0777 (such as \"0660\")", m))
		} else {
			d.SocketMode = uint32(n)
		}
	case int64:
		if m < 0 || m > 0o777 {
			top.fail("socket_mode", fmt.Errorf("%d is not a mode from 0 to 0777: write it as a string (\"0660\") or a TOML octal (0o660)", m))
		} else {
			d.SocketMode = uint32(m)
		}
	default:
		top.fail("socket_mode", wantErr("an octal string such as \"0660\"", raw.SocketMode))
	}
}
