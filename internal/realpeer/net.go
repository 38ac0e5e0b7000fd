// net.go: free loopback ports, milter socket spec parsing, and waiting for
// a TCP or unix listener (by its LISTEN state, or by connecting).

package realpeer

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (the
// kernel picked it for a listener that is closed again), and that no
// earlier FreePort call of this test binary returned: the kernel hands a
// just-closed port out again, and two parallel tests (or one test asking
// twice, e.g. for a front's listener and its next hop) would then get the
// same one. Another process can still take it in between; that race is
// accepted for tests.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("realpeer: FreePort: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if handedOut.claim(port) {
			return port
		}
	}
	t.Fatalf("realpeer: FreePort: the kernel keeps giving ports already handed out")
	return 0
}

// handedOut is the set of ports FreePort returned in this test binary:
// the one piece of process-wide state of the harness, since uniqueness
// across parallel tests is the point.
var handedOut = portSet{m: map[int]bool{}}

type portSet struct {
	mu sync.Mutex
	m  map[int]bool
}

func (s *portSet) claim(port int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[port] {
		return false
	}
	s.m[port] = true
	return true
}

// DialWait tries to connect to network/addr ("tcp" or "unix") until a
// connection is accepted or timeout passes. The probe connection is closed
// at once (a milter sees a connection that ends before negotiation).
func DialWait(network, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		var c net.Conn
		c, err = net.DialTimeout(network, addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not accepting after %v: %w", network, addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Listening reports whether something listens on network/addr ("tcp"
// with "HOST:PORT", or "unix" with a socket path), judged from
// /proc/net/tcp, /proc/net/tcp6 or /proc/net/unix without connecting, so
// the peer sees no probe connection (a Postfix smtpd probe would otherwise
// open a milter session). Where /proc cannot be read it falls back to
// connecting.
func Listening(network, addr string) bool {
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			return false
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return false
		}
		ok, procErr := procTCPListening(net.ParseIP(host), port)
		if procErr != nil {
			return DialWait("tcp", addr, 0) == nil
		}
		return ok
	case "unix":
		b, err := os.ReadFile("/proc/net/unix")
		if err != nil {
			return DialWait("unix", addr, 0) == nil
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// Num RefCount Protocol Flags Type St Inode Path; Flags
			// 00010000 is __SO_ACCEPTCON (a listening socket).
			if len(f) >= 8 && f[7] == addr && f[3] == "00010000" {
				return true
			}
		}
	}
	return false
}

// procTCPListening looks for a LISTEN (state 0A) socket on port bound to
// ip or to the wildcard address.
func procTCPListening(ip net.IP, port int) (bool, error) {
	var read bool
	var lastErr error
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			lastErr = err
			continue
		}
		read = true
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "0A" {
				continue
			}
			hexIP, hexPort, ok := strings.Cut(f[1], ":")
			if !ok {
				continue
			}
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil || int(p) != port {
				continue
			}
			lip := procIP(hexIP)
			if lip == nil || lip.IsUnspecified() || ip == nil || lip.Equal(ip) {
				return true, nil
			}
		}
	}
	if !read {
		return false, lastErr
	}
	return false, nil
}

// procIP decodes a /proc/net/tcp address: 32-bit words in host byte order
// (little-endian on the machines this runs on).
func procIP(h string) net.IP {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil
	}
	ip := make(net.IP, len(b))
	for i := 0; i < len(b); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return ip
}

// waitListening polls Listening until it holds or timeout passes.
func waitListening(network, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !Listening(network, addr) {
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s %s after %v", network, addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// WaitTCP waits until something listens on addr ("127.0.0.1:PORT"; see
// Listening: no connection is made) and fails the test after timeout.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := waitListening("tcp", addr, timeout); err != nil {
		t.Fatalf("realpeer: %v", err)
	}
}

// WaitUnix waits until something listens on the unix socket path (see
// Listening: no connection is made) and fails the test after timeout.
func WaitUnix(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	if err := waitListening("unix", path, timeout); err != nil {
		t.Fatalf("realpeer: %v", err)
	}
}

// SpecAddr parses a milter socket spec and returns the Go network ("tcp"
// or "unix") and address. Accepted: libmilter "inet:PORT@HOST",
// "inet6:PORT@HOST", "unix:/path", "local:/path", and Postfix
// "inet:HOST:PORT".
func SpecAddr(spec string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return "", "", fmt.Errorf("milter spec %q: no type prefix", spec)
	}
	switch kind {
	case "unix", "local":
		return "unix", rest, nil
	case "inet", "inet6", "tcp":
		if port, host, ok := strings.Cut(rest, "@"); ok {
			if _, err := strconv.Atoi(port); err != nil {
				return "", "", fmt.Errorf("milter spec %q: bad port", spec)
			}
			return "tcp", net.JoinHostPort(host, port), nil
		}
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("milter spec %q: %v", spec, err)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	}
	return "", "", fmt.Errorf("milter spec %q: unknown type %q", spec, kind)
}

// PostfixMilter converts a libmilter spec ("inet:PORT@HOST") to the form
// smtpd_milters wants ("inet:HOST:PORT"). Unix specs are returned as is.
func PostfixMilter(spec string) string {
	network, addr, err := SpecAddr(spec)
	if err != nil || network != "tcp" {
		return spec
	}
	return "inet:" + addr
}

// WaitSpec waits until something listens on the socket named by a milter
// spec (see Listening: no connection is made).
func WaitSpec(t testing.TB, spec string, timeout time.Duration) {
	t.Helper()
	network, addr, err := SpecAddr(spec)
	if err != nil {
		t.Fatalf("realpeer: %v", err)
	}
	if err := waitListening(network, addr, timeout); err != nil {
		t.Fatalf("realpeer: %v", err)
	}
}
