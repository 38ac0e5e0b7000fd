//go:build linux

package unixconn

import (
	"context"
	"net"
	"os"
	"syscall"
	"time"
)

// Dial connects to the unix stream socket at path and serves it as a
// Conn, made directly (no copy of a Go socket to take over: a few system
// calls less per connection). A listener whose queue is full (connect
// would have to wait) is dialled through net.Dialer instead, which waits
// until deadline (zero: none) or the end of ctx.
func Dial(ctx context.Context, path string, deadline time.Time) (net.Conn, error) {
	raddr := &net.UnixAddr{Name: path, Net: "unix"}
	if err := ctx.Err(); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: raddr, Err: err}
	}
	sock, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: raddr, Err: os.NewSyscallError("socket", err)}
	}
	switch err := syscall.Connect(sock, &syscall.SockaddrUnix{Name: path}); err {
	case nil:
	case syscall.EAGAIN:
		syscall.Close(sock)
		d := net.Dialer{Deadline: deadline, KeepAlive: -1}
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		if q, err := New(c.(*net.UnixConn)); err == nil {
			return q, nil
		}
		return c, nil // served by Go's poller after all
	default:
		syscall.Close(sock)
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: raddr, Err: os.NewSyscallError("connect", err)}
	}
	c, err := newConn(sock, &net.UnixAddr{Net: "unix"}, raddr)
	if err != nil {
		syscall.Close(sock)
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: raddr, Err: err}
	}
	return c, nil
}
