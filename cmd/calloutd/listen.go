// listen.go: listening sockets with calloutd's backlog (net.Listen always
// uses the kernel's maximum): the socket is made by hand, with
// SO_REUSEADDR (calloutd's reuseaddr default), bound, and listen(2)-ed
// with the configured backlog, then handed to net.FileListener. A stale
// unix socket is removed first.

package main

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/mailmux/mailmux/config/syntax"
)

func listen(a syntax.Address, backlog int) (net.Listener, error) {
	var (
		family int
		sa     syscall.Sockaddr
	)
	switch a.Network {
	case "unix":
		if fi, err := os.Lstat(a.Addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.Dial("unix", a.Addr); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen %s: socket in use", a.Raw)
			}
			os.Remove(a.Addr)
		}
		family, sa = syscall.AF_UNIX, &syscall.SockaddrUnix{Name: a.Addr}
	default:
		ta, err := net.ResolveTCPAddr(a.Network, a.Addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", a.Raw, err)
		}
		if ip4 := ta.IP.To4(); ip4 != nil || ta.IP == nil {
			s := &syscall.SockaddrInet4{Port: ta.Port}
			if ip4 != nil {
				copy(s.Addr[:], ip4)
			}
			family, sa = syscall.AF_INET, s
		} else {
			s := &syscall.SockaddrInet6{Port: ta.Port}
			copy(s.Addr[:], ta.IP.To16())
			family, sa = syscall.AF_INET6, s
		}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen %s: socket: %w", a.Raw, err)
	}
	if family != syscall.AF_UNIX {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			syscall.Close(fd)
			return nil, fmt.Errorf("listen %s: SO_REUSEADDR: %w", a.Raw, err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("listen %s: bind: %w", a.Raw, err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", a.Raw, err)
	}
	f := os.NewFile(uintptr(fd), a.Raw)
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a.Raw, err)
	}
	if family == syscall.AF_UNIX {
		os.Chmod(a.Addr, 0o666)
	}
	return ln, nil
}
