//go:build linux

package unixconn

import "net"

// Wrap returns c as a Conn when it is a unix stream connection (and
// could be taken over), c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	uc, ok := c.(*net.UnixConn)
	if !ok || uc.LocalAddr().Network() != "unix" { // not unixgram, unixpacket
		return c
	}
	if q, err := New(uc); err == nil {
		return q
	}
	return c
}
