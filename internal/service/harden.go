// harden.go: how pmult creates its files and sockets: the unix socket is
// born with its final mode at the bind (the umask is set for it, never a
// chmod through a path an attacker could swap for a symlink), then given
// socket_owner and socket_group with lchown (a symlink swapped in is
// never followed), the pidfile is opened without following symlinks, and
// wildcard listen addresses are warned about (metrics default to
// loopback). privileges.go switches the account afterwards.

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/mailmux/mailmux/config"
)

// socketPerm is what pmult's unix sockets are created with: their mode
// (socket_mode: the MTA runs as another user and must be able to
// connect), and owner and group (-1: the process's).
type socketPerm struct {
	mode     os.FileMode
	uid, gid int
}

// defaultPerm is socket_mode's default with the process's owner and group.
var defaultPerm = socketPerm{mode: config.DefaultSocketMode, uid: -1, gid: -1}

// perm returns the socket permissions of id.
func (id *Identity) perm() socketPerm {
	return socketPerm{mode: id.SocketMode, uid: id.SocketUID, gid: id.SocketGID}
}

// afterBindHook, when set (tests), runs once the unix socket is at its
// final path, before listenUnix returns.
var afterBindHook func(path string)

// listenUnix binds a unix socket at path with perm's mode from the start:
// the umask is set for the bind, which creates the socket itself (bind
// never follows a symlink: an existing path fails), so there is no chmod
// through the path afterwards. perm's owner and group are then set with
// lchown after checking that path is still a socket: a symlink swapped
// in meanwhile is neither followed nor changed. The socket keeps its own name (tools such
// as ss and /proc/net/unix show path). A stale socket (nobody listening)
// is replaced; any other file at path, a symlink included, is an error.
// Listeners are opened at startup, before pmult creates any other file,
// so the process-wide umask change is not seen by anything else.
func listenUnix(path string, perm socketPerm) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			if fi.Mode()&os.ModeSymlink != 0 {
				return nil, fmt.Errorf("%s is a symlink, refusing to replace it with the socket", path)
			}
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, errors.New("socket in use by another process")
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	old := syscall.Umask(0o777 &^ int(perm.mode.Perm()))
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if afterBindHook != nil {
		afterBindHook(path)
	}
	if perm.uid >= 0 || perm.gid >= 0 {
		if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
			ln.(*net.UnixListener).SetUnlinkOnClose(false) // not ours any more
			ln.Close()
			return nil, fmt.Errorf("%s was replaced right after the bind (by another process?): not changing its owner", path)
		}
		if err := os.Lchown(path, perm.uid, perm.gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket_owner/socket_group: %w", err)
		}
	}
	return ln, nil
}

// listen opens a listener; a stale unix socket is replaced and the new one
// created with perm (see listenUnix).
func listen(a config.Address, perm socketPerm) (net.Listener, error) {
	if a.Network == "unix" {
		ln, err := listenUnix(a.Addr, perm)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", a.Raw, err)
		}
		return ln, nil
	}
	// MTA connections are bounded by pmult's idle timeout: no keep-alive.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), a.Network, a.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a.Raw, err)
	}
	return ln, nil
}

// writePidfile writes the process id to path without following a symlink
// (pmult often starts as root in a directory others may write to). The
// file is created with mode 0644 or truncated; a symlink is an error.
// uid and gid (-1: unchanged) own it: the account pmult switches to, so
// that it can still empty it at exit (see removePidfile).
func writePidfile(path string, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return fmt.Errorf("pidfile %s is a symlink, refusing to write through it", path)
		}
		return fmt.Errorf("pidfile: %w", err)
	}
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("pidfile %s is not a regular file", path)
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			f.Close()
			return fmt.Errorf("pidfile %s: %w", path, err)
		}
	}
	_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pidfile %s: %w", path, err)
	}
	return nil
}

// removePidfile removes the pidfile at exit; when its directory is not
// writable any more (pmult switched to another user), it empties the
// file instead, so that no stale process id is left in it.
func removePidfile(path string, log *slog.Logger) {
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return
	}
	f, terr := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if terr == nil {
		f.Close()
		log.Warn("cannot remove the pidfile (its directory is not writable by pmult's user): emptied it", "file", path, "err", err)
		return
	}
	log.Warn("cannot remove the pidfile", "file", path, "err", err)
}

// isWildcard reports whether a TCP host:port listens on every address.
func isWildcard(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// warnWildcard logs a warning for a TCP listen address on every interface.
func warnWildcard(log *slog.Logger, what string, a config.Address) {
	if a.Network != "unix" && isWildcard(a.Addr) {
		log.Warn(what+" listens on every address: any host that can reach it can use it; prefer a specific address or a firewall",
			"address", a.String())
	}
}

// metricsAddr is the metrics listen address: a bare port ("9100" or
// ":9100") means loopback (127.0.0.1:9100); a wildcard must be written
// out (0.0.0.0:9100, [::]:9100).
func metricsAddr(s string) string {
	if _, err := strconv.Atoi(s); err == nil {
		return net.JoinHostPort("127.0.0.1", s)
	}
	if host, port, err := net.SplitHostPort(s); err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return s
}
