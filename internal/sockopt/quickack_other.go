// quickack_other.go: no TCP_QUICKACK outside Linux.

//go:build !linux

package sockopt

import "net"

func QuickAck(net.Conn) {}
