// pending_linux.go: bytes a client sent that are not read yet (SIOCINQ).

//go:build linux

package smtp

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pending returns how many bytes wait in the socket's receive queue
// (0 when it cannot tell).
func pending(nc net.Conn) int {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
