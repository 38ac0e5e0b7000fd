// address_test.go: tests of ParseAddress over the Sendmail, Postfix and
// mailfromd dialects, its errors, and the canonical String form.

package syntax

import (
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, network, addr, str string
	}{
		// Sendmail.
		{"inet:7000@127.0.0.1", "tcp", "127.0.0.1:7000", "inet:127.0.0.1:7000"},
		{"inet:7000@localhost", "tcp", "localhost:7000", "inet:localhost:7000"},
		{"inet:7000", "tcp", ":7000", "inet::7000"},
		{"inet:smtp@mx.example.com", "tcp", "mx.example.com:25", "inet:mx.example.com:25"},
		{"inet6:7000@::1", "tcp6", "[::1]:7000", "inet6:[::1]:7000"},
		{"inet6:7000@[::1]", "tcp6", "[::1]:7000", "inet6:[::1]:7000"},
		{"inet6:7000@fe80::1%eth0", "tcp6", "[fe80::1%eth0]:7000", "inet6:[fe80::1%eth0]:7000"},
		{"inet6:7000@localhost", "tcp6", "localhost:7000", "inet6:localhost:7000"},
		{"inet6:7000", "tcp6", ":7000", "inet6::7000"},
		{"unix:/var/run/milter.sock", "unix", "/var/run/milter.sock", "unix:/var/run/milter.sock"},
		{"local:/var/run/milter.sock", "unix", "/var/run/milter.sock", "unix:/var/run/milter.sock"},
		{"INET:7000@127.0.0.1", "tcp", "127.0.0.1:7000", "inet:127.0.0.1:7000"},
		// Postfix.
		{"inet:127.0.0.1:7000", "tcp", "127.0.0.1:7000", "inet:127.0.0.1:7000"},
		{"inet:localhost:smtp", "tcp", "localhost:25", "inet:localhost:25"},
		{"inet:[::1]:7000", "tcp", "[::1]:7000", "inet:[::1]:7000"},
		{"inet:[2001:db8::25]:0", "tcp", "[2001:db8::25]:0", "inet:[2001:db8::25]:0"},
		{"inet::7000", "tcp", ":7000", "inet::7000"},
		{"/var/spool/postfix/milter", "unix", "/var/spool/postfix/milter", "unix:/var/spool/postfix/milter"},
		{"127.0.0.1:7000", "tcp", "127.0.0.1:7000", "inet:127.0.0.1:7000"},
		{"milter.example.com:8891", "tcp", "milter.example.com:8891", "inet:milter.example.com:8891"},
		{"[::1]:7000", "tcp", "[::1]:7000", "inet:[::1]:7000"},
		{"unix:milter.sock", "unix", "milter.sock", "unix:milter.sock"},
		// mailfromd.
		{"inet://127.0.0.1:3333", "tcp", "127.0.0.1:3333", "inet:127.0.0.1:3333"},
		{"inet://milter.example.com:3333", "tcp", "milter.example.com:3333", "inet:milter.example.com:3333"},
		{"inet://3333@127.0.0.1", "tcp", "127.0.0.1:3333", "inet:127.0.0.1:3333"},
		{"inet6://[::1]:3333", "tcp6", "[::1]:3333", "inet6:[::1]:3333"},
		{"unix:///var/run/mailfromd.sock", "unix", "/var/run/mailfromd.sock", "unix:/var/run/mailfromd.sock"},
		{"unix://mailfrom", "unix", "mailfrom", "unix:mailfrom"},
		{"local:///var/run/mailfromd.sock", "unix", "/var/run/mailfromd.sock", "unix:/var/run/mailfromd.sock"},
		// Odds and ends.
		{"  inet:7000@127.0.0.1  ", "tcp", "127.0.0.1:7000", "inet:127.0.0.1:7000"},
		{"inet:0@127.0.0.1", "tcp", "127.0.0.1:0", "inet:127.0.0.1:0"},
		{"inet:65535@127.0.0.1", "tcp", "127.0.0.1:65535", "inet:127.0.0.1:65535"},
		{"inet:007@127.0.0.1", "tcp", "127.0.0.1:7", "inet:127.0.0.1:7"},
		{"unix:////odd", "unix", "//odd", "unix:////odd"},
		{"unix:@abstract", "unix", "@abstract", "unix:@abstract"},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tt.in, err)
			continue
		}
		if a.Network != tt.network || a.Addr != tt.addr || a.Raw != tt.in {
			t.Errorf("ParseAddress(%q) = %+v, want {%s %s %q}", tt.in, a, tt.network, tt.addr, tt.in)
		}
		if got := a.String(); got != tt.str {
			t.Errorf("ParseAddress(%q).String() = %q, want %q", tt.in, got, tt.str)
		}
		b, err := ParseAddress(a.String())
		if err != nil || b.Network != a.Network || b.Addr != a.Addr {
			t.Errorf("round trip of %q via %q = %+v, %v", tt.in, a.String(), b, err)
		}
	}
}

func TestParseAddressErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `config: address "": empty`},
		{"   ", `config: address "   ": empty`},
		{"inet:abc", `config: address "inet:abc": bad port "abc" (not a number nor a known service name)`},
		{"inet:", `config: address "inet:": missing port`},
		{"inet:70000@localhost", `port 70000 out of range`},
		{"inet:99999999999999999999", `out of range`},
		{"inet:7000@", `missing host after '@'`},
		{"inet:-1@localhost", `bad port "-1"`},
		{"inet:localhost:", `missing port`},
		{"inet:localhost:x y", `bad port "x y"`},
		{"inet:::1:7000", `IPv6 address "::1" must be in brackets`},
		{"inet:[::1]", `missing :PORT after "[::1]"`},
		{"inet:[::1:7000", `missing ']'`},
		{"inet:[]:7000", `empty brackets`},
		{"inet:[127.0.0.1]:7000", `"127.0.0.1" in brackets is not an IPv6 address`},
		{"inet:[localhost]:7000", `"localhost" in brackets is not an IPv6 address`},
		{"inet6:7000@127.0.0.1", `inet6 needs an IPv6 address or a host name, not "127.0.0.1"`},
		{"inet://7000", `missing port (want inet://HOST:PORT)`},
		{"inet:7000@bad_host!", `bad host "bad_host!"`},
		{"inet:7000@-x.example", `bad host`},
		{"inet:7000@a..b", `bad host`},
		{"inet6:7000@fe80::1%a/b", `bad IPv6 zone`},
		{"unix:", `missing socket path`},
		{"unix://", `missing socket path`},
		{"local:", `missing socket path`},
		{"unix:/tmp/a\x00b", `control character`},
		{"unx:/tmp/sock", `unknown scheme "unx" (want inet, inet6, unix or local)`},
		{"tcp:127.0.0.1:25", `unknown scheme "tcp"`},
		{"ipv6://[::1]:25", `unknown scheme "ipv6"`},
		{"localhost", `unknown form`},
		{"7000@localhost", `unknown form`},
		{"::1:7000", `must be in brackets`},
		{"localhost:nosuchservice", `bad port "nosuchservice"`},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if err == nil {
			t.Errorf("ParseAddress(%q) = %+v, want error containing %q", tt.in, a, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseAddress(%q) error %q, want it to contain %q", tt.in, err, tt.want)
		}
		if !strings.HasPrefix(err.Error(), "config: address ") {
			t.Errorf("ParseAddress(%q) error %q lacks the config: address prefix", tt.in, err)
		}
	}
}

func TestAddressStringZero(t *testing.T) {
	if s := (Address{}).String(); s != "" {
		t.Errorf("zero Address String() = %q, want empty", s)
	}
	if s := (Address{Network: "tcp4", Addr: "127.0.0.1:1"}).String(); s != "inet:127.0.0.1:1" {
		t.Errorf("tcp4 String() = %q", s)
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"inet:7000@127.0.0.1", "inet6:7000@[::1]", "inet:[::1]:7000", "inet://h:1",
		"unix:///x", "local:y", "/z", "h:smtp", "inet:abc", "inet6:1@fe80::1%lo",
		"unix:////x", "inet:[", "inet:@", "[]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: address ") {
				t.Fatalf("error %q lacks prefix", err)
			}
			return
		}
		switch a.Network {
		case "tcp", "tcp6", "unix":
		default:
			t.Fatalf("ParseAddress(%q): network %q", s, a.Network)
		}
		if a.Addr == "" || a.Raw != s {
			t.Fatalf("ParseAddress(%q) = %+v", s, a)
		}
		b, err := ParseAddress(a.String())
		if err != nil {
			t.Fatalf("ParseAddress(%q) = %+v; reparse of %q: %v", s, a, a.String(), err)
		}
		if b.Network != a.Network || b.Addr != a.Addr {
			t.Fatalf("ParseAddress(%q) = %+v; reparse of %q = %+v", s, a, a.String(), b)
		}
	})
}
