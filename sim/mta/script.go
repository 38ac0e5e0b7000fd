// script.go: the SMTP-script front's line syntax. A script line is either an
// SMTP command ("MAIL FROM:<a@b> SIZE=10") or one of mtasim's
// administrative commands, a backslash and a letter (case-insensitive):
//
//	\D name=value [name=value …]   define macros
//	\U name [name …]               undefine macros
//	\L [name …]                    list macros
//	\S family [host [addr [port]]] sender socket (stdio|unix|inet|inet6|0..3)
//	\E code                        expect the next reply to start with code
//	\W seconds                     wait (fractions allowed)
//	\#text                         comment, ignored
//
// As in mailfromd's mtasim the first argument may follow the letter
// without a space ("\E250", "\Dname=value"); unlike it, "\E 250" works too.
// Values may be double-quoted to hold spaces ("\D v=\"a b\"").

package mtasim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Line is one parsed script line.
type Line struct {
	// Admin is the administrative command letter (upper case), or 0 for an
	// SMTP command.
	Admin byte
	// Verb is the SMTP command word in upper case; Arg the rest of the line
	// after one space ("FROM:<a@b> SIZE=10").
	Verb, Arg string
	// Args are the arguments of an administrative command.
	Args []string
	// Raw is the line as read, without its line end.
	Raw string
}

// Sender is the client socket the milter's connect handler sees (\S).
type Sender struct {
	Family byte // 'U' unknown/stdio, 'L' unix, '4' inet, '6' inet6
	Host   string
	Addr   string
	Port   uint16
}

// ErrSyntax is wrapped by every script syntax error.
var ErrSyntax = errors.New("script syntax error")

func syntaxErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, a...))
}

// ParseLine parses one script line (its line end already removed).
func ParseLine(raw string) (Line, error) {
	l := Line{Raw: raw}
	s := strings.TrimRight(raw, "\r\n")
	if strings.HasPrefix(s, `\`) {
		if len(s) < 2 {
			return l, syntaxErr("a lone backslash")
		}
		l.Admin = upper(s[1])
		rest := s[2:]
		args, err := splitArgs(rest)
		if err != nil {
			return l, err
		}
		l.Args = args
		return l, checkAdmin(l)
	}
	verb, arg, _ := strings.Cut(strings.TrimLeft(s, " \t"), " ")
	l.Verb = strings.ToUpper(verb)
	l.Arg = strings.TrimLeft(arg, " ")
	return l, nil
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// splitArgs splits at spaces and tabs; a double-quoted part may hold them
// (backslash escapes the next character inside quotes).
func splitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
			in = true
		case !quoted && (c == ' ' || c == '\t'):
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quoted {
		return nil, syntaxErr("unterminated quote in %q", s)
	}
	if in {
		args = append(args, cur.String())
	}
	return args, nil
}

func checkAdmin(l Line) error {
	switch l.Admin {
	case 'D':
		if len(l.Args) == 0 {
			return syntaxErr(`\D needs name=value`)
		}
		for _, a := range l.Args {
			if n, _, ok := strings.Cut(a, "="); !ok || !validMacroName(n) {
				return syntaxErr(`\D: %q is not name=value`, a)
			}
		}
	case 'U':
		if len(l.Args) == 0 {
			return syntaxErr(`\U needs a macro name`)
		}
		for _, a := range l.Args {
			if !validMacroName(a) {
				return syntaxErr(`\U: bad macro name %q`, a)
			}
		}
	case 'L':
	case 'S':
		_, err := ParseSender(l.Args)
		return err
	case 'E':
		_, err := expectCode(l.Args)
		return err
	case 'W':
		_, err := waitDuration(l.Args)
		return err
	case '#':
	default:
		return syntaxErr(`unknown administrative command \%c`, l.Admin)
	}
	return nil
}

// validMacroName accepts "i", "{name}" and "name": letters, digits, '_'
// and '-' (braces only around the whole name).
func validMacroName(n string) bool {
	if len(n) >= 2 && n[0] == '{' && n[len(n)-1] == '}' {
		n = n[1 : len(n)-1]
	}
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// expectCode returns the digits of an \E command: one to three digits.
func expectCode(args []string) (string, error) {
	if len(args) != 1 || len(args[0]) > 3 || !isDigits(args[0]) || args[0][0] < '1' || args[0][0] > '5' {
		return "", syntaxErr(`\E needs a reply code (1 to 3 digits, 1xx..5xx), got %q`, strings.Join(args, " "))
	}
	return args[0], nil
}

func waitDuration(args []string) (time.Duration, error) {
	if len(args) != 1 {
		return 0, syntaxErr(`\W needs seconds`)
	}
	f, err := strconv.ParseFloat(args[0], 64)
	if err != nil || f < 0 || f > 3600 {
		return 0, syntaxErr(`\W: bad number of seconds %q`, args[0])
	}
	return time.Duration(f * float64(time.Second)), nil
}

// ParseSender parses the arguments of \S or --sender-socket: family
// (stdio, unix, inet, inet6 or 0..3), then host name, address and port as
// the family needs them.
func ParseSender(args []string) (Sender, error) {
	if len(args) == 0 || len(args) > 4 {
		return Sender{}, syntaxErr(`\S needs family [hostname [address [port]]]`)
	}
	var s Sender
	switch strings.ToLower(args[0]) {
	case "stdio", "0":
		s.Family = 'U'
		if len(args) > 2 {
			return s, syntaxErr(`\S stdio takes at most a host name`)
		}
	case "unix", "1":
		s.Family = 'L'
		if len(args) != 3 {
			return s, syntaxErr(`\S unix needs a host name and a socket path`)
		}
	case "inet", "2":
		s.Family = '4'
	case "inet6", "3":
		s.Family = '6'
	default:
		return s, syntaxErr(`\S: unknown family %q (stdio, unix, inet, inet6 or 0..3)`, args[0])
	}
	if len(args) > 1 {
		s.Host = args[1]
	}
	if len(args) > 2 {
		s.Addr = args[2]
	}
	if s.Family == '4' || s.Family == '6' {
		if len(args) != 4 {
			return s, syntaxErr(`\S %s needs host name, address and port`, args[0])
		}
		p, err := strconv.ParseUint(args[3], 10, 16)
		if err != nil {
			return s, syntaxErr(`\S: bad port %q`, args[3])
		}
		s.Port = uint16(p)
		if !validIP(s.Addr, s.Family == '6') {
			return s, syntaxErr(`\S: bad %s address %q`, args[0], s.Addr)
		}
	}
	return s, nil
}
