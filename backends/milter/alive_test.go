package milter

import (
	"net"
	"testing"
	"time"
)

// alive, on a kept connection: nothing sent is alive; a byte the filter
// should not have sent, or its end of the connection, is not.
func TestAlive(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		addr := "127.0.0.1:0"
		if network == "unix" {
			addr = t.TempDir() + "/s"
		}
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		pair := func() (*session, net.Conn) {
			t.Helper()
			c, err := net.Dial(network, l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			sv, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close(); sv.Close() })
			b := New(Config{Name: "f", Network: network, Address: addr})
			return &session{b: b, conn: c, r: newReader(c, 0, &b.bufs)}, sv
		}
		s, _ := pair()
		for i := range 2 { // twice: the peek consumes nothing
			if !s.alive() {
				t.Errorf("%s: quiet connection not alive (check %d)", network, i+1)
			}
		}
		// Idle for longer than the last read's deadline: still alive.
		s.conn.SetReadDeadline(time.Now().Add(-time.Second))
		if !s.alive() {
			t.Errorf("%s: quiet connection past its read deadline not alive", network)
		}
		s, sv := pair()
		sv.Write([]byte{'c'})
		time.Sleep(20 * time.Millisecond)
		if s.alive() {
			t.Errorf("%s: connection with unexpected bytes alive", network)
		}
		s, sv = pair()
		sv.Close()
		time.Sleep(20 * time.Millisecond)
		if s.alive() {
			t.Errorf("%s: closed connection alive", network)
		}
	}
}
