//go:build !linux

package unixconn

import (
	"context"
	"net"
	"time"
)

// Dial connects to the unix stream socket at path by deadline (net.Dialer:
// the package serves Linux only).
func Dial(ctx context.Context, path string, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline, KeepAlive: -1}
	return d.DialContext(ctx, "unix", path)
}
