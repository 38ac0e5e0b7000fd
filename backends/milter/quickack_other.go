// quickack_other.go: no TCP_QUICKACK outside Linux.

//go:build !linux

package milter

import "net"

func quickack(net.Conn) {}
