// parse.go: the command parser: a command line to its verb and argument,
// MAIL/RCPT paths and ESMTP parameters (kept as the client sent them, for
// the engine's event Args, and decoded into go-smtp's MailOptions and
// RcptOptions for the next hop), and XCLIENT/XFORWARD attributes (xtext).
// Everything here is pure and fuzzed (fuzz_test.go).

package smtp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	gosmtp "github.com/emersion/go-smtp"
)

// command is one parsed command line.
type command struct {
	verb string // upper case ("MAIL"); "" for an empty line
	arg  string // the rest, leading blanks removed
	line string // the line as received, CRLF removed
}

// parseCommand splits a command line (without its line end). The verb is
// the first word, up to a blank; it must be letters only (else an error:
// Postfix's smtpd_forbidden_commands idea of a bogus command).
func parseCommand(line string) (command, error) {
	c := command{line: line}
	s := strings.TrimLeft(line, " \t")
	i := strings.IndexAny(s, " \t")
	verb := s
	if i >= 0 {
		verb, c.arg = s[:i], strings.TrimLeft(s[i:], " \t")
	}
	if verb == "" {
		return c, nil
	}
	for j := 0; j < len(verb); j++ {
		b := verb[j]
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return c, fmt.Errorf("bad command name %q", truncate(verb, 40))
		}
	}
	c.verb = strings.ToUpper(verb)
	return c, nil
}

// parsePath parses "FROM:<addr> params" (prefix "FROM:" or "TO:",
// case-insensitive, blanks allowed after the colon) into the path as
// given (with its angle brackets) and the ESMTP parameters.
func parsePath(arg, prefix string) (path string, params []string, err error) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", nil, fmt.Errorf("syntax: expected %s<address>", prefix)
	}
	s := strings.TrimLeft(arg[len(prefix):], " \t")
	if s == "" {
		return "", nil, errors.New("syntax: missing address")
	}
	if s[0] == '<' {
		end := closingBracket(s)
		if end < 0 {
			return "", nil, errors.New("syntax: unbalanced <")
		}
		path, s = s[:end+1], s[end+1:]
		if s != "" && s[0] != ' ' && s[0] != '\t' {
			return "", nil, errors.New("syntax: junk after address")
		}
	} else {
		// RFC 821 allowed no brackets; Postfix accepts it too
		// (strict_rfc821_envelopes = no). The path is the first word.
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			i = len(s)
		}
		path, s = "<"+s[:i]+">", s[i:]
	}
	params = strings.Fields(s)
	for _, p := range params {
		k, _, _ := strings.Cut(p, "=")
		if k == "" {
			return "", nil, fmt.Errorf("syntax: bad parameter %q", truncate(p, 40))
		}
	}
	return path, params, nil
}

// closingBracket returns the index of the '>' closing s[0] == '<', quoted
// strings and backslash escapes skipped; -1 if none.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case '>':
			if !quoted {
				return i
			}
		}
	}
	return -1
}

// unbracket strips the angle brackets of a path ("<a@b>" → "a@b").
func unbracket(p string) string {
	if len(p) >= 2 && p[0] == '<' && p[len(p)-1] == '>' {
		return p[1 : len(p)-1]
	}
	return p
}

// mailOptions decodes MAIL parameters; maxSize > 0 is the SIZE limit.
func mailOptions(params []string) (*gosmtp.MailOptions, error) {
	o := &gosmtp.MailOptions{}
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToUpper(k) {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("bad SIZE %q", truncate(v, 20))
			}
			o.Size = n
		case "BODY":
			switch b := gosmtp.BodyType(strings.ToUpper(v)); b {
			case gosmtp.Body7Bit, gosmtp.Body8BitMIME:
				o.Body = b
			default:
				return nil, fmt.Errorf("unsupported BODY %q", truncate(v, 20))
			}
		case "SMTPUTF8":
			o.UTF8 = true
		case "RET":
			switch r := gosmtp.DSNReturn(strings.ToUpper(v)); r {
			case gosmtp.DSNReturnFull, gosmtp.DSNReturnHeaders:
				o.Return = r
			default:
				return nil, fmt.Errorf("bad RET %q", truncate(v, 20))
			}
		case "ENVID":
			id, err := decodeXtext(v)
			if err != nil {
				return nil, fmt.Errorf("bad ENVID: %w", err)
			}
			o.EnvelopeID = id
		case "AUTH":
			a, err := decodeXtext(v)
			if err != nil {
				return nil, fmt.Errorf("bad AUTH: %w", err)
			}
			a = unbracket(a)
			o.Auth = &a
		default:
			return nil, fmt.Errorf("unsupported parameter %q", truncate(k, 20))
		}
	}
	return o, nil
}

// rcptOptions decodes RCPT parameters (DSN only).
func rcptOptions(params []string) (*gosmtp.RcptOptions, error) {
	o := &gosmtp.RcptOptions{}
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToUpper(k) {
		case "NOTIFY":
			for _, n := range strings.Split(strings.ToUpper(v), ",") {
				switch d := gosmtp.DSNNotify(n); d {
				case gosmtp.DSNNotifyNever, gosmtp.DSNNotifyDelayed, gosmtp.DSNNotifyFailure, gosmtp.DSNNotifySuccess:
					o.Notify = append(o.Notify, d)
				default:
					return nil, fmt.Errorf("bad NOTIFY %q", truncate(v, 20))
				}
			}
		case "ORCPT":
			t, a, ok := strings.Cut(v, ";")
			if !ok {
				return nil, fmt.Errorf("bad ORCPT %q", truncate(v, 40))
			}
			dec, err := decodeXtext(a)
			if err != nil {
				return nil, fmt.Errorf("bad ORCPT: %w", err)
			}
			switch at := gosmtp.DSNAddressType(strings.ToUpper(t)); at {
			case gosmtp.DSNAddressTypeRFC822, gosmtp.DSNAddressTypeUTF8:
				o.OriginalRecipientType, o.OriginalRecipient = at, dec
			default:
				return nil, fmt.Errorf("bad ORCPT type %q", truncate(t, 20))
			}
		default:
			return nil, fmt.Errorf("unsupported parameter %q", truncate(k, 20))
		}
	}
	return o, nil
}

// decodeXtext decodes RFC 3461 xtext ("+2B" is '+').
func decodeXtext(s string) (string, error) {
	if !strings.Contains(s, "+") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated xtext escape")
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad xtext escape %q", s[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// attrs parses XCLIENT/XFORWARD "NAME=value ..." attributes (values
// xtext). Names are upper-cased; unknown names are an error, as in
// Postfix.
func attrs(arg string, known []string) (map[string]string, error) {
	m := map[string]string{}
	f := strings.Fields(arg)
	if len(f) == 0 {
		return nil, errors.New("no attributes")
	}
	for _, a := range f {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("bad attribute %q", truncate(a, 40))
		}
		k = strings.ToUpper(k)
		found := false
		for _, n := range known {
			found = found || n == k
		}
		if !found {
			return nil, fmt.Errorf("unknown attribute %q", truncate(k, 20))
		}
		dv, err := decodeXtext(v)
		if err != nil {
			return nil, err
		}
		m[k] = dv
	}
	return m, nil
}

// Attribute names as Postfix's smtpd offers them (XCLIENT_README,
// XFORWARD_README).
var (
	xclientAttrs  = []string{"NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT", "REVERSE_NAME"}
	xforwardAttrs = []string{"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"}
)

// unavailable reports the placeholder values of XCLIENT/XFORWARD.
func unavailable(v string) bool {
	u := strings.ToUpper(v)
	return u == "[UNAVAILABLE]" || u == "[TEMPUNAVAIL]"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
