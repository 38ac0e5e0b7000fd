// address.go: socket addresses written in any of the three dialects in use
// around milters (Sendmail, Postfix, mailfromd) parsed into one form that
// net.Dial and net.Listen take.

package syntax

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Address is a parsed socket address.
type Address struct {
	// Network is "tcp", "tcp4", "tcp6" or "unix", as net.Dial takes it.
	// ParseAddress produces "tcp" for inet: and bare host:port, "tcp6"
	// for inet6: and "unix" for sockets.
	Network string
	// Addr is "host:port" for TCP (the port always numeric, an IPv6 host in
	// brackets, an empty host meaning every local address) or the socket
	// path for unix.
	Addr string
	// Raw is the text the address was parsed from, for messages.
	Raw string
}

// parseError is the error of ParseAddress and ParseDuration: which kind of
// value, the input as given and what is wrong with it.
type parseError struct {
	kind  string // "address" or "duration"
	input string
	msg   string
}

func (e *parseError) Error() string {
	return fmt.Sprintf("%s%s %q: %s", ErrPrefix, e.kind, e.input, e.msg)
}

// ParseAddress parses a socket address in any of these forms:
//
//	Sendmail   inet:PORT@HOST  inet6:PORT@HOST  inet:PORT  unix:/path  local:/path
//	Postfix    inet:HOST:PORT  inet:[::1]:PORT  unix:/path  /path  HOST:PORT
//	mailfromd  inet://HOST:PORT  inet6://[::1]:PORT  unix:///path  local:///path
//
// After the scheme, text containing '@' is PORT@HOST; otherwise it is
// HOST:PORT split at the last colon, an IPv6 host in brackets. A lone PORT
// (inet:7000) means every local address. HOST may be bracketed in the
// PORT@HOST form too. PORT is a number 0..65535 (0: any free port, for
// listening) or a service name such as "smtp". Schemes are case-insensitive;
// "unix://" and "unix:" both introduce a path, so unix:///var/run/x.sock is
// /var/run/x.sock and unix://x.sock is the relative path x.sock.
func ParseAddress(s string) (Address, error) {
	fail := func(format string, args ...any) (Address, error) {
		return Address{}, &parseError{kind: "address", input: s, msg: fmt.Sprintf(format, args...)}
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return fail("empty")
	}
	if i := strings.IndexFunc(t, isControl); i >= 0 {
		return fail("control character %q", t[i])
	}
	if t[0] == '/' {
		return Address{Network: "unix", Addr: t, Raw: s}, nil
	}
	scheme, rest, hasColon := strings.Cut(t, ":")
	switch strings.ToLower(scheme) {
	case "unix", "local":
		path := strings.TrimSpace(strings.TrimPrefix(rest, "//"))
		if path == "" {
			return fail("missing socket path")
		}
		return Address{Network: "unix", Addr: path, Raw: s}, nil
	case "inet", "inet6":
		network := "tcp"
		if strings.EqualFold(scheme, "inet6") {
			network = "tcp6"
		}
		rest = strings.TrimSpace(rest)
		url := strings.HasPrefix(rest, "//")
		if url {
			rest = rest[2:]
		}
		hostport, msg := inetHostPort(rest, url, network == "tcp6")
		if msg != "" {
			return fail("%s", msg)
		}
		return Address{Network: network, Addr: hostport, Raw: s}, nil
	default:
		if !hasColon {
			return fail("unknown form (want inet:, inet6:, unix: or local: followed by an address, a /path, or HOST:PORT)")
		}
		if strings.HasPrefix(rest, "/") {
			return fail("unknown scheme %q (want inet, inet6, unix or local)", scheme)
		}
		host, port, bracketed, msg := splitHostPort(t)
		if msg != "" && !bracketed && strings.Contains(host, ":") {
			if _, err := netip.ParseAddr(host); err != nil {
				return fail("unknown scheme %q (want inet, inet6, unix or local)", scheme)
			}
		}
		if msg != "" {
			return fail("%s", msg)
		}
		hostport, msg := joinHostPort(host, port, bracketed, false)
		if msg != "" {
			return fail("%s", msg)
		}
		return Address{Network: "tcp", Addr: hostport, Raw: s}, nil
	}
}

// inetHostPort parses what follows "inet:", "inet6:" or "inet://" and
// returns the canonical host:port, or a message saying what is wrong.
func inetHostPort(rest string, url, v6 bool) (hostport, msg string) {
	if rest == "" {
		return "", "missing port"
	}
	var host, port string
	var bracketed bool
	if p, h, ok := strings.Cut(rest, "@"); ok {
		// Sendmail: PORT@HOST.
		port, host = strings.TrimSpace(p), strings.TrimSpace(h)
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host, bracketed = host[1:len(host)-1], true
		}
		if host == "" && !bracketed {
			return "", "missing host after '@'"
		}
	} else if strings.ContainsAny(rest, ":[") {
		// Postfix and mailfromd: HOST:PORT.
		host, port, bracketed, msg = splitHostPort(rest)
		if msg != "" {
			return "", msg
		}
	} else {
		// Sendmail: a lone PORT.
		if url {
			return "", "missing port (want inet://HOST:PORT)"
		}
		port = rest
	}
	return joinHostPort(host, port, bracketed, v6)
}

// splitHostPort splits HOST:PORT at the last colon, or after the closing
// bracket of [IPv6]:PORT. A HOST with a colon outside brackets is an error;
// host is returned with it.
func splitHostPort(s string) (host, port string, bracketed bool, msg string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, "missing ']' after IPv6 address"
		}
		host, after := s[1:end], s[end+1:]
		if !strings.HasPrefix(after, ":") {
			return "", "", false, fmt.Sprintf("missing :PORT after %q", s[:end+1])
		}
		return host, after[1:], true, ""
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", false, "missing port"
	}
	host, port = s[:i], s[i+1:]
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err == nil {
			return host, port, false, fmt.Sprintf("IPv6 address %q must be in brackets ([%s]:PORT) or use the PORT@HOST form", host, host)
		}
		return host, port, false, fmt.Sprintf("bad host %q", host)
	}
	return host, port, false, ""
}

// joinHostPort validates host and port and returns them as net.Dial wants.
func joinHostPort(host, port string, bracketed, v6 bool) (string, string) {
	if bracketed && host == "" {
		return "", "empty brackets"
	}
	if msg := checkHost(host, bracketed, v6); msg != "" {
		return "", msg
	}
	n, msg := parsePort(port)
	if msg != "" {
		return "", msg
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), ""
}

// checkHost accepts an empty host, an IP address (IPv6 possibly with a
// zone) or a host name.
func checkHost(host string, bracketed, v6 bool) string {
	if host == "" {
		return ""
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" && !isName(ip.Zone()) {
			return fmt.Sprintf("bad IPv6 zone in %q", host)
		}
		if bracketed && !ip.Is6() {
			return fmt.Sprintf("%q in brackets is not an IPv6 address", host)
		}
		if v6 && ip.Is4() {
			return fmt.Sprintf("inet6 needs an IPv6 address or a host name, not %q", host)
		}
		return ""
	}
	if bracketed {
		return fmt.Sprintf("%q in brackets is not an IPv6 address", host)
	}
	if len(host) > 253 || !isName(host) || strings.HasPrefix(host, ".") ||
		strings.HasPrefix(host, "-") || strings.Contains(host, "..") {
		return fmt.Sprintf("bad host %q", host)
	}
	return ""
}

// parsePort accepts a decimal port 0..65535 or a service name.
func parsePort(p string) (int, string) {
	if p == "" {
		return 0, "missing port"
	}
	if isDigits(p) {
		n, err := strconv.Atoi(p)
		if err != nil || n > 65535 {
			return 0, fmt.Sprintf("port %s out of range (0..65535)", p)
		}
		return n, ""
	}
	if !isName(p) {
		return 0, fmt.Sprintf("bad port %q", p)
	}
	n, err := net.LookupPort("tcp", p)
	if err != nil {
		return 0, fmt.Sprintf("bad port %q (not a number nor a known service name)", p)
	}
	return n, ""
}

// String returns the address in canonical form: inet:HOST:PORT,
// inet6:[HOST]:PORT or unix:PATH. ParseAddress reads it back to the same
// Network and Addr. The zero Address gives "".
func (a Address) String() string {
	switch a.Network {
	case "":
		return ""
	case "unix":
		if strings.HasPrefix(a.Addr, "//") {
			return "unix://" + a.Addr
		}
		return "unix:" + a.Addr
	case "tcp", "tcp4":
		return "inet:" + a.Addr
	case "tcp6":
		return "inet6:" + a.Addr
	default:
		return a.Network + ":" + a.Addr
	}
}

// Port returns the numeric port of a TCP address, -1 for others.
func (a Address) Port() int {
	if a.Network == "unix" {
		return -1
	}
	_, p, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return n
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isName reports whether s is made of letters, digits, '.', '-' and '_'
// only: host names, service names and interface (zone) names.
func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
