// named.go: named listeners (issue 12): a listen entry "name=address"
// names its listener, and the front end learns the name of each
// connection's listener (pmult.Offer.Listener).

package connserve

import "net"

// Named returns ln whose connections carry name ("": ln itself).
func Named(ln net.Listener, name string) net.Listener {
	if name == "" {
		return ln
	}
	return namedListener{Listener: ln, name: name}
}

type namedListener struct {
	net.Listener
	name string
}

func (l namedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return namedConn{Conn: nc, name: l.name}, nil
}

type namedConn struct {
	net.Conn
	name string
}

// Unname returns the connection as accepted (without the wrapper Named
// put on it, so socket options reach it) and its listener's name ("" when
// the listener was not named).
func Unname(nc net.Conn) (net.Conn, string) {
	if c, ok := nc.(namedConn); ok {
		return c.Conn, c.name
	}
	return nc, ""
}
