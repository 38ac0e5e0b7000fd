// convert.go: Convert turns the configuration of mailfromd's pmult (GNU Mailutils syntax: statements,
// blocks, lists, strings, comments, `include`, `program pmult { … }`) into
// this pmult's TOML, and reports, with file and line, every statement it
// cannot convert or converts only approximately (`pmult import` prints
// the report on stderr).
//
// When the file has `program pmult` blocks only their statements are
// converted (the rest belongs to other programs, e.g. mailfromd itself);
// otherwise the top level is taken as pmult's. An `include` of a
// directory includes the file named pmult in it, as Mailutils does.

package mailfromd

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/macros"
)

// Result is a converted configuration.
type Result struct {
	// TOML is pmult's configuration (a MeTA1 front, no milter listener).
	TOML string
	// Notes report, with file and line, every statement not converted or
	// converted only approximately, in order.
	Notes []string
	// Incomplete says that some statement could not be converted (its
	// note says which); TOML holds the rest.
	Incomplete bool
}

// Convert reads the mailfromd configuration at path, its includes
// followed, and converts it. The error is about reading or parsing the
// files; what cannot be converted is in the Result. The TOML is not
// validated here (config.Parse does it).
func Convert(path string) (*Result, error) {
	imp := &importer{}
	stmts, err := imp.parseFile(path, 0)
	if err != nil {
		return nil, err
	}
	toml := imp.convert(stmts)
	return &Result{TOML: toml, Notes: imp.notes, Incomplete: imp.failed}, nil
}

// stmt is one Mailutils statement: a name, its arguments (a list argument
// is flattened into List), and a block.
type stmt struct {
	file  string
	line  int
	name  string
	args  []string
	lists [][]string
	block []stmt
	isBlk bool
}

func (s stmt) where() string { return fmt.Sprintf("%s:%d", s.file, s.line) }

type importer struct {
	notes  []string
	failed bool
}

func (imp *importer) cannot(s stmt, why string) {
	imp.failed = true
	imp.notes = append(imp.notes, fmt.Sprintf("%s: cannot convert %q: %s", s.where(), s.name, why))
}

func (imp *importer) note(s stmt, what string) {
	imp.notes = append(imp.notes, fmt.Sprintf("%s: %s: %s", s.where(), s.name, what))
}

// ---- lexer and parser ----

type token struct {
	text string
	str  bool // a quoted string
	line int
}

func lex(src, file string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case unicode.IsSpace(rune(c)):
			i++
		case c == '#' || (c == '/' && i+1 < len(src) && src[i+1] == '/'):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: unterminated comment", file, line)
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 4
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case '\n':
						line++
					default:
						b.WriteByte(src[j])
					}
					continue
				}
				if src[j] == '\n' {
					line++
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("%s:%d: unterminated string", file, line)
			}
			toks = append(toks, token{text: b.String(), str: true, line: line})
			i = j + 1
		case strings.IndexByte(";{}(),", c) >= 0:
			toks = append(toks, token{text: string(c), line: line})
			i++
		default:
			j := i
			for j < len(src) && !unicode.IsSpace(rune(src[j])) && strings.IndexByte(";{}(),\"'#", src[j]) < 0 {
				j++
			}
			toks = append(toks, token{text: src[i:j], line: line})
			i = j
		}
	}
	return toks, nil
}

func (imp *importer) parseFile(path string, depth int) ([]stmt, error) {
	if depth > 10 {
		return nil, fmt.Errorf("%s: include nested too deeply", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "pmult")
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	toks, err := lex(string(src), path)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, file: path}
	stmts, err := p.block(false)
	if err != nil {
		return nil, err
	}
	return imp.expand(stmts, path, depth)
}

// expand replaces include statements (at any depth) by the statements of
// the files they name, relative to the including file.
func (imp *importer) expand(stmts []stmt, path string, depth int) ([]stmt, error) {
	var out []stmt
	for _, s := range stmts {
		if s.name == "include" && len(s.args) == 1 && !s.isBlk {
			inc := s.args[0]
			if !filepath.IsAbs(inc) {
				inc = filepath.Join(filepath.Dir(path), inc)
			}
			sub, err := imp.parseFile(inc, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: include: %w", s.where(), err)
			}
			out = append(out, sub...)
			continue
		}
		if s.isBlk {
			b, err := imp.expand(s.block, path, depth)
			if err != nil {
				return nil, err
			}
			s.block = b
		}
		out = append(out, s)
	}
	return out, nil
}

type parser struct {
	toks []token
	i    int
	file string
}

func (p *parser) errf(format string, a ...any) error {
	line := 0
	if p.i < len(p.toks) {
		line = p.toks[p.i].line
	} else if len(p.toks) > 0 {
		line = p.toks[len(p.toks)-1].line
	}
	return fmt.Errorf("%s:%d: %s", p.file, line, fmt.Sprintf(format, a...))
}

// block parses statements until "}" (inner) or the end.
func (p *parser) block(inner bool) ([]stmt, error) {
	var out []stmt
	for {
		if p.i >= len(p.toks) {
			if inner {
				return nil, p.errf("missing }")
			}
			return out, nil
		}
		t := p.toks[p.i]
		if !t.str && t.text == "}" {
			if !inner {
				return nil, p.errf("unexpected }")
			}
			p.i++
			return out, nil
		}
		if !t.str && t.text == ";" {
			p.i++
			continue
		}
		s := stmt{file: p.file, line: t.line, name: t.text}
		p.i++
	args:
		for {
			if p.i >= len(p.toks) {
				return nil, p.errf("statement %q: missing ;", s.name)
			}
			t := p.toks[p.i]
			switch {
			case !t.str && t.text == ";":
				p.i++
				break args
			case !t.str && t.text == "{":
				p.i++
				b, err := p.block(true)
				if err != nil {
					return nil, err
				}
				s.block, s.isBlk = b, true
				break args
			case !t.str && t.text == "(":
				p.i++
				var l []string
				for p.i < len(p.toks) && !(p.toks[p.i].text == ")" && !p.toks[p.i].str) {
					if tt := p.toks[p.i]; tt.str || tt.text != "," {
						l = append(l, tt.text)
					}
					p.i++
				}
				s.lists = append(s.lists, l)
				if p.i >= len(p.toks) {
					return nil, p.errf("missing )")
				}
				p.i++
			case !t.str && (t.text == "}" || t.text == ")" || t.text == ","):
				return nil, p.errf("unexpected %q in statement %q", t.text, s.name)
			default:
				s.args = append(s.args, t.text)
				p.i++
			}
		}
		out = append(out, s)
	}
}

// ---- conversion ----

type converted struct {
	top      []string // "key = value" lines
	meta1    []string
	defines  map[string][]string
	backends [][]string
}

func q(s string) string { return strconv.Quote(s) }

func (imp *importer) convert(stmts []stmt) string {
	var mine []stmt
	hasProgram := false
	others := 0
	for _, s := range stmts {
		if s.name == "program" && s.isBlk {
			if len(s.args) == 1 && s.args[0] == "pmult" {
				hasProgram = true
				mine = append(mine, s.block...)
			}
		}
	}
	if !hasProgram {
		mine = stmts
	} else {
		for _, s := range stmts {
			if s.name != "program" {
				others++
			}
		}
		if others > 0 {
			imp.notes = append(imp.notes, fmt.Sprintf("%d top-level statement(s) outside `program pmult` left out (they configure other programs)", others))
		}
	}
	c := &converted{defines: map[string][]string{}}
	var listens []string
	clients := 0
	for _, s := range mine {
		arg := strings.Join(s.args, " ")
		switch s.name {
		case "program":
			// Another program's block.
		case "listen":
			if _, err := syntax.ParseAddress(arg); err != nil {
				imp.cannot(s, err.Error())
				continue
			}
			listens = append(listens, arg)
		case "pidfile":
			c.top = append(c.top, "pidfile = "+q(arg))
		case "max-threads-soft", "max-threads-hard", "max-pmilter-fd", "pmilter-debug":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 0 {
				imp.cannot(s, "want a non-negative number")
				continue
			}
			key := map[string]string{"max-threads-soft": "max_sessions_soft", "max-threads-hard": "max_sessions",
				"max-pmilter-fd": "max_connections", "pmilter-debug": "pmilter_debug"}[s.name]
			c.meta1 = append(c.meta1, fmt.Sprintf("%s = %d", key, n))
		case "auth-macros":
			b, ok := mailutilsBool(arg)
			if !ok {
				imp.cannot(s, "want a boolean")
				continue
			}
			c.meta1 = append(c.meta1, fmt.Sprintf("auth_macros = %v", b))
		case "define-macros":
			// define-macros HANDLER (MACROS), define-macros (H1, H2) (MACROS),
			// define-macros HANDLER MACRO…
			var handlers, names []string
			switch {
			case len(s.args) == 1 && len(s.lists) == 1:
				handlers, names = s.args, s.lists[0]
			case len(s.args) == 0 && len(s.lists) == 2:
				handlers, names = s.lists[0], s.lists[1]
			case len(s.args) >= 2 && len(s.lists) == 0:
				handlers, names = s.args[:1], s.args[1:]
			default:
				imp.cannot(s, "want: define-macros HANDLER (MACRO, …)")
				continue
			}
			if len(handlers) == 0 {
				imp.cannot(s, "no handler")
				continue
			}
			for _, h := range handlers {
				if _, err := macros.ParseMeta1Stage(h); err != nil {
					imp.cannot(s, err.Error())
					continue
				}
				c.defines[h] = append(c.defines[h], names...)
			}
		case "client":
			clients++
			if b := imp.client(s, clients); b != nil {
				c.backends = append(c.backends, b)
			}
		case "debug":
			level := arg
			for _, d := range s.block {
				if d.name == "level" {
					level = strings.Join(d.args, " ")
				}
			}
			lv := "info"
			if strings.Contains(level, "trace") || strings.Contains(level, "prot") {
				lv = "debug"
			}
			c.top = append(c.top, "log_level = "+q(lv))
			imp.note(s, fmt.Sprintf("debug %q approximated as log_level = %q", level, lv))
		case "logging":
			for _, d := range s.block {
				a := strings.Join(d.args, " ")
				switch d.name {
				case "tag":
					c.top = append(c.top, "log_tag = "+q(a))
				case "syslog":
					imp.note(d, "choose with the command line: --syslog or --stderr")
				case "facility":
					if a != "mail" {
						imp.cannot(d, "pmult logs to the mail facility; the facility is not configurable")
					}
				default:
					imp.cannot(d, "unknown logging statement")
				}
			}
		case "include":
			imp.cannot(s, "malformed include")
		default:
			imp.cannot(s, "not a pmult statement, or not one this pmult knows")
		}
	}
	var b strings.Builder
	b.WriteString("# Converted from a mailfromd pmult configuration by `pmult import`.\n")
	b.WriteString("# MeTA1 front: its wire format is a provisional model (docs/meta1.md).\n")
	for _, l := range c.top {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n[milter]\n")
	b.WriteString("listen = []   # no milter listener: this pmult serves MeTA1 only\n")
	b.WriteString("\n[meta1]\n")
	if len(listens) == 0 {
		listens = []string{"inet://127.0.0.1:3333"}
		imp.notes = append(imp.notes, "no listen statement: listen = inet://127.0.0.1:3333 assumed")
	}
	qs := make([]string, len(listens))
	for i, l := range listens {
		qs[i] = q(l)
	}
	b.WriteString("listen = [" + strings.Join(qs, ", ") + "]\n")
	for _, l := range c.meta1 {
		b.WriteString(l + "\n")
	}
	if len(c.defines) > 0 {
		b.WriteString("\n[meta1.define_macros]\n")
		keys := make([]string, 0, len(c.defines))
		for k := range c.defines {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ns := make([]string, len(c.defines[k]))
			for i, n := range c.defines[k] {
				ns[i] = q(n)
			}
			b.WriteString(k + " = [" + strings.Join(ns, ", ") + "]\n")
		}
	}
	for _, be := range c.backends {
		b.WriteString("\n[[backend]]\n")
		for _, l := range be {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// client converts a client block into [[backend]] lines.
func (imp *importer) client(s stmt, n int) []string {
	name := fmt.Sprintf("client%d", n)
	if len(s.args) > 0 {
		name = strings.Join(s.args, " ")
	}
	lines := []string{"name = " + q(name)}
	hasURL := false
	for _, d := range s.block {
		a := strings.Join(d.args, " ")
		switch d.name {
		case "type":
			if !strings.HasPrefix(a, "milter") {
				imp.cannot(d, fmt.Sprintf("client type %q: only milter clients are supported", a))
				return nil
			}
			if v := strings.TrimSpace(strings.TrimPrefix(a, "milter")); v != "" {
				if p, err := strconv.Atoi(v); err == nil && p >= 2 && p <= 6 {
					imp.note(d, fmt.Sprintf("minimal protocol version %d is not enforced", p))
				}
			}
		case "url":
			if _, err := syntax.ParseAddress(a); err != nil {
				imp.cannot(d, err.Error())
				return nil
			}
			lines = append(lines, "address = "+q(a))
			hasURL = true
		case "connect-timeout", "read-timeout", "write-timeout", "eom-timeout":
			var dur syntax.Duration
			if err := dur.UnmarshalTOML(a); err != nil {
				imp.cannot(d, err.Error())
				continue
			}
			lines = append(lines, strings.ReplaceAll(d.name, "-", "_")+" = "+q(a))
		case "log-level":
			lv, ok := mailutilsLogLevel(a)
			if !ok {
				imp.cannot(d, fmt.Sprintf("log level %q", a))
				continue
			}
			lines = append(lines, "log_level = "+q(lv))
			if strings.ContainsAny(a, "!<") {
				imp.note(d, fmt.Sprintf("%q approximated as the minimum level %q", a, lv))
			}
		default:
			imp.cannot(d, "unknown client statement")
		}
	}
	if !hasURL {
		imp.cannot(s, "client without url")
		return nil
	}
	return lines
}

func mailutilsBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "yes", "true", "t", "on", "1":
		return true, true
	case "no", "false", "nil", "off", "0":
		return false, true
	}
	return false, false
}

// mailutilsLogLevel turns a gacopyz log-level list (">info", "err, fatal",
// "!proto") into the lowest slog level it lets through.
func mailutilsLogLevel(s string) (string, bool) {
	order := []string{"proto", "debug", "info", "warn", "err", "fatal"}
	to := map[string]string{"proto": "debug", "debug": "debug", "info": "info", "warn": "warn", "err": "error", "fatal": "error"}
	best := len(order)
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		item = strings.TrimLeft(item, "<>!")
		i := -1
		for j, o := range order {
			if o == item {
				i = j
			}
		}
		if i < 0 {
			return "", false
		}
		best = min(best, i)
	}
	if best == len(order) {
		return "", false
	}
	return to[order[best]], true
}
