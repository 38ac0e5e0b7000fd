// privileges.go: the account pmult runs as. Started as root with user
// set, pmult binds its sockets (with socket_owner, socket_group and
// socket_mode, see harden.go), writes its pidfile (owned by user, so that
// it can be emptied at exit when its directory is root's), opens the
// metrics listener, then calls setgroups (user's supplementary groups),
// setgid and setuid, for every thread of the process (Go's syscall
// package does that on Linux since Go 1.16), checks that root cannot be
// regained, and checks that the spool directory is writable as the new
// user. Root without user is warned about.

package service

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/mailmux/mailmux/config"
)

// Identity is the resolved user, group and socket keys of a
// configuration.
type Identity struct {
	// User is the name of the account to switch to; "": no switch.
	User string
	// UID, GID and Groups are the ids after the switch (Groups: the
	// supplementary groups, as initgroups(3) gives them).
	UID, GID int
	Groups   []int
	// SocketUID and SocketGID own the unix sockets; -1: unchanged.
	SocketUID, SocketGID int
	// SocketMode is the sockets' mode.
	SocketMode os.FileMode
}

// Switch reports whether the process is to change its account.
func (id *Identity) Switch() bool { return id.User != "" }

// ResolveIdentity looks up the user, group, socket_owner and
// socket_group of cfg on this host (names or numeric ids); the error
// joins every lookup that failed. pmult check reports them too.
func ResolveIdentity(cfg *config.Config) (*Identity, error) {
	id := &Identity{UID: -1, GID: -1, SocketUID: -1, SocketGID: -1, SocketMode: os.FileMode(cfg.SocketMode)}
	var errs []error
	if cfg.User != "" {
		if err := id.account(cfg.User, cfg.Group); err != nil {
			errs = append(errs, err)
		}
		id.SocketUID, id.SocketGID = id.UID, id.GID
	}
	if cfg.SocketOwner != "" {
		if u, err := lookupUser(cfg.SocketOwner); err != nil {
			errs = append(errs, fmt.Errorf("socket_owner: %w", err))
		} else {
			id.SocketUID = atoi(u.Uid)
		}
	}
	if cfg.SocketGroup != "" {
		if g, err := lookupGroup(cfg.SocketGroup); err != nil {
			errs = append(errs, fmt.Errorf("socket_group: %w", err))
		} else {
			id.SocketGID = atoi(g.Gid)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return id, nil
}

// Account resolves an account to switch to with Drop: userName (a name
// or a uid) and group ("": the user's primary group), with the user's
// supplementary groups. calloutd uses it for its own user and group.
func Account(userName, group string) (*Identity, error) {
	id := &Identity{SocketUID: -1, SocketGID: -1}
	if err := id.account(userName, group); err != nil {
		return nil, err
	}
	return id, nil
}

// Drop switches every thread of the process to id's account and checks
// that root cannot be regained; a process that is not root may only
// "switch" to the account it runs as.
func Drop(id *Identity) error { return dropPrivileges(id) }

// account fills the ids of the switch to userName and group; the error
// joins both lookups' failures.
func (id *Identity) account(userName, group string) error {
	var errs []error
	u, err := lookupUser(userName)
	if err != nil {
		errs = append(errs, fmt.Errorf("user: %w", err))
	} else {
		id.User, id.UID = u.Username, atoi(u.Uid)
		id.GID = atoi(u.Gid)
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				id.Groups = append(id.Groups, atoi(g))
			}
		}
	}
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			errs = append(errs, fmt.Errorf("group: %w", err))
		} else {
			id.GID = atoi(g.Gid)
		}
	}
	if !slices.Contains(id.Groups, id.GID) {
		id.Groups = append([]int{id.GID}, id.Groups...)
	}
	return errors.Join(errs...)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s) // os/user ids are decimal on Unix
	return n
}

// lookupUser finds a user by name, or by uid when s is a number.
func lookupUser(s string) (*user.User, error) {
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		u, err := user.LookupId(s)
		if err != nil {
			return nil, fmt.Errorf("no account with uid %s: %w", s, err)
		}
		return u, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return nil, fmt.Errorf("no account %q: %w", s, err)
	}
	return u, nil
}

// lookupGroup finds a group by name, or by gid when s is a number (a gid
// without an entry in the group database is taken as it is).
func lookupGroup(s string) (*user.Group, error) {
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		if g, err := user.LookupGroupId(s); err == nil {
			return g, nil
		}
		return &user.Group{Gid: s, Name: s}, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return nil, fmt.Errorf("no group %q: %w", s, err)
	}
	return g, nil
}

// dropPrivileges switches every thread of the process to id (setgroups,
// setgid, setuid) and checks the result: the real, effective and saved
// ids are id's and setuid(0) fails. A process that is not root may only
// "switch" to the account it already runs as.
func dropPrivileges(id *Identity) error {
	if os.Geteuid() != 0 {
		if os.Geteuid() == id.UID && os.Getegid() == id.GID {
			return nil // already the configured account (e.g. systemd User=)
		}
		return fmt.Errorf("user %s (uid %d, gid %d): pmult runs as uid %d, gid %d, not root: it cannot switch",
			id.User, id.UID, id.GID, os.Geteuid(), os.Getegid())
	}
	if err := syscall.Setgroups(id.Groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", id.Groups, err)
	}
	if err := syscall.Setgid(id.GID); err != nil {
		return fmt.Errorf("setgid %d: %w", id.GID, err)
	}
	if err := syscall.Setuid(id.UID); err != nil {
		return fmt.Errorf("setuid %d: %w", id.UID, err)
	}
	if os.Getuid() != id.UID || os.Geteuid() != id.UID || os.Getgid() != id.GID || os.Getegid() != id.GID {
		return fmt.Errorf("after the switch: uid %d euid %d gid %d egid %d, want uid %d gid %d",
			os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid(), id.UID, id.GID)
	}
	if id.UID != 0 && syscall.Setuid(0) == nil {
		return errors.New("after the switch, setuid(0) succeeded: root can be regained")
	}
	return nil
}

// writableBy reports whether dir's permission bits let uid (with groups)
// create and remove files in it.
func writableBy(dir string, uid int, groups []int) bool {
	fi, err := os.Stat(dir)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	perm := fi.Mode().Perm()
	switch {
	case uid == 0:
		return true
	case int(st.Uid) == uid:
		return perm&0o300 == 0o300
	case slices.Contains(groups, int(st.Gid)):
		return perm&0o030 == 0o030
	default:
		return perm&0o003 == 0o003
	}
}

// checkSpoolWritable creates and removes a file in the spool directory,
// as pmult's sessions will.
func checkSpoolWritable(dir string) error {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, ".pmult-check-")
	if err != nil {
		return fmt.Errorf("spool directory %s: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// switchAccount is the step of Run after the listeners and the pidfile:
// the switch to id, or the warning that pmult stays root. file is the
// configuration file, which a reload reads as the new user.
func switchAccount(cfg *config.Config, id *Identity, file string, log *slog.Logger) error {
	if !id.Switch() {
		if os.Geteuid() == 0 {
			log.Warn("running as root: set user (and group) in the configuration to drop privileges once the sockets are bound")
		}
		return nil
	}
	if err := dropPrivileges(id); err != nil {
		return err
	}
	log.Info("running as", "user", id.User, "uid", id.UID, "gid", id.GID, "groups", id.Groups)
	if err := checkSpoolWritable(cfg.SpoolDir); err != nil {
		return fmt.Errorf("as user %s: %w (messages bigger than spool_memory could not be kept)", id.User, err)
	}
	if file != "" {
		if f, err := os.Open(file); err != nil {
			log.Warn("the configuration file is not readable as the new user: a reload (SIGHUP) will fail", "user", id.User, "err", err)
		} else {
			f.Close()
		}
	}
	if cfg.PIDFile != "" && !writableBy(filepath.Dir(cfg.PIDFile), id.UID, id.Groups) {
		log.Warn("the pidfile's directory is not writable as the new user: at exit the pidfile is emptied, not removed",
			"pidfile", cfg.PIDFile, "user", id.User)
	}
	return nil
}

// accountChanged reports whether a reloaded configuration changes user,
// group or a socket key: they apply from the start only.
func accountChanged(old, cfg *config.Config) bool {
	return old.User != cfg.User || old.Group != cfg.Group || old.SocketOwner != cfg.SocketOwner ||
		old.SocketGroup != cfg.SocketGroup || old.SocketMode != cfg.SocketMode
}
