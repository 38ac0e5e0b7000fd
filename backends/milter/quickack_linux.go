// quickack_linux.go: TCP_QUICKACK after reads on backend sockets, so that a
// filter which writes a modification and its final reply as two segments
// (libmilter without TCP_NODELAY) is not held ~40 ms by our delayed ACK.

//go:build linux

package milter

import (
	"net"
	"syscall"
)

func quickack(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
