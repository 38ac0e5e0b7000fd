//go:build !linux

package unixconn

import "net"

// Wrap returns c: the package serves Linux only.
func Wrap(c net.Conn) net.Conn { return c }
