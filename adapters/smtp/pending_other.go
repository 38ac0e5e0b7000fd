// pending_other.go: no receive-queue query outside Linux.

//go:build !linux

package smtp

import "net"

func pending(net.Conn) int { return 0 }
