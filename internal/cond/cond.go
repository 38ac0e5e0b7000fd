// Package cond compiles the declarative conditions of a [[backend]] (its
// `if` table) into pmult.Condition values: every check that can fail
// (regular expressions, CIDRs, list files, key names and types) happens
// in Compile, and Eval only compares.
//
// A condition table's keys all have to hold (and); `all`, `any` (arrays
// of condition tables) and `not` (a table) combine them. Regular
// expressions are RE2 (Go regexp: linear time). List files hold one entry
// a line; blank lines and text after # are ignored.
//
// Tunables and defaults (bad input is refused at compile time, with its
// place):
//
//	MaxRegexLen   4096 bytes: the longest regular expression
//	MaxRegexInst  20000: the most instructions its compiled program may have
//	MaxListBytes  64 MiB: the largest list file
//	listReadTries 3: reads of a list file that changes while it is read,
//	              before it is refused (replace lists by rename)
package cond

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	resyntax "regexp/syntax"
	"slices"
	"sort"
	"strings"

	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/pmult"
)

// Keys are the keys of a condition table.
func Keys() []string {
	return []string{"listener", "client", "client_file", "client_name", "client_name_suffix",
		"client_name_regex", "helo", "helo_regex", "auth", "auth_user", "auth_user_regex",
		"sender", "sender_domain", "sender_regex", "sender_file", "rcpt", "rcpt_domain",
		"rcpt_regex", "rcpt_file", "rcpt_match", "macro", "macro_regex", "header",
		"header_regex", "size_over", "size_under", "all", "any", "not"}
}

// Compile compiles the condition table t; prefix names it in errors
// ("if", "if.any[1]"). Each error is a *syntax.KeyError.
func Compile(prefix string, v any) (pmult.Condition, []error) {
	return compile(&compiler{}, prefix, v)
}

func compile(c *compiler, prefix string, v any) (pmult.Condition, []error) {
	n := c.table(prefix, v)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return n, nil
}

type compiler struct {
	errs []error
	stat func(*os.File) (os.FileInfo, error) // nil: (*os.File).Stat (tests replace it)
}

func (c *compiler) fail(key string, err error) {
	c.errs = append(c.errs, &syntax.KeyError{Key: key, Err: err})
}

func (c *compiler) table(prefix string, v any) node {
	t, ok := v.(map[string]any)
	if !ok {
		c.fail(prefix, syntax.WantErr("a table of conditions", v))
		return and(nil)
	}
	if len(t) == 0 {
		c.fail(prefix, errors.New("empty condition table"))
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rcptMatch = "any"
	if m, ok := t["rcpt_match"]; ok {
		s, isStr := m.(string)
		switch {
		case !isStr:
			c.fail(prefix+".rcpt_match", syntax.WantErr("a string", m))
		case s == "any" || s == "all":
			rcptMatch = s
		default:
			c.fail(prefix+".rcpt_match", fmt.Errorf("%q: want any or all", s))
		}
	}
	var rcpt []strMatch
	var parts []node
	for _, k := range keys {
		key := prefix + "." + k
		val := t[k]
		switch k {
		case "listener":
			parts = append(parts, listenerNode(c.set(key, val, false)))
		case "client":
			if p := c.prefixes(key, val); p != nil {
				parts = append(parts, p)
			}
		case "client_file":
			parts = append(parts, c.clientFiles(key, val))
		case "client_name":
			parts = append(parts, strNode{kind: pmult.KindConnect, get: hostName, m: setMatch(c.set(key, val, true)), desc: key})
		case "client_name_suffix":
			parts = append(parts, strNode{kind: pmult.KindConnect, get: hostName, m: suffixMatch(c.list(key, val, true)), desc: key})
		case "client_name_regex":
			parts = append(parts, strNode{kind: pmult.KindConnect, get: hostName, m: c.regex(key, val), desc: key})
		case "helo":
			parts = append(parts, strNode{kind: pmult.KindHelo, get: helo, m: setMatch(c.set(key, val, true)), desc: key})
		case "helo_regex":
			parts = append(parts, strNode{kind: pmult.KindHelo, get: helo, m: c.regex(key, val), desc: key})
		case "auth":
			b, ok := val.(bool)
			if !ok {
				c.fail(key, syntax.WantErr("true or false", val))
			}
			parts = append(parts, authNode(b))
		case "auth_user":
			parts = append(parts, strNode{kind: pmult.KindMail, get: authUser, m: setMatch(c.set(key, val, false)), desc: key})
		case "auth_user_regex":
			parts = append(parts, strNode{kind: pmult.KindMail, get: authUser, m: c.regex(key, val), desc: key})
		case "sender":
			parts = append(parts, strNode{kind: pmult.KindMail, get: sender, m: setMatch(c.set(key, val, true)), desc: key})
		case "sender_domain":
			parts = append(parts, strNode{kind: pmult.KindMail, get: sender, m: domainMatch(c.list(key, val, true)), desc: key})
		case "sender_regex":
			parts = append(parts, strNode{kind: pmult.KindMail, get: sender, m: c.regex(key, val), desc: key})
		case "sender_file":
			parts = append(parts, strNode{kind: pmult.KindMail, get: sender, m: c.addrFiles(key, val), desc: key})
		case "rcpt":
			rcpt = append(rcpt, setMatch(c.set(key, val, true)))
		case "rcpt_domain":
			rcpt = append(rcpt, domainMatch(c.list(key, val, true)))
		case "rcpt_regex":
			rcpt = append(rcpt, c.regex(key, val))
		case "rcpt_file":
			rcpt = append(rcpt, c.addrFiles(key, val))
		case "rcpt_match":
		case "macro", "macro_regex":
			m, ok := val.(map[string]any)
			if !ok {
				c.fail(key, syntax.WantErr(`a table of macro names and values ({ "{daemon_name}" = "smtpd" })`, val))
				continue
			}
			for _, name := range sortedKeys(m) {
				var sm strMatch
				if k == "macro" {
					sm = setMatch(c.set(key+"."+name, m[name], false))
				} else {
					sm = c.regex(key+"."+name, m[name])
				}
				parts = append(parts, macroNode{name: strings.Trim(name, "{}"), stage: macroStage(name), m: sm})
			}
		case "header":
			for _, name := range c.list(key, val, true) {
				parts = append(parts, headerNode{name: name})
			}
		case "header_regex":
			m, ok := val.(map[string]any)
			if !ok {
				c.fail(key, syntax.WantErr(`a table of header names and regular expressions ({ Subject = "^\\[SPAM" })`, val))
				continue
			}
			for _, name := range sortedKeys(m) {
				parts = append(parts, headerNode{name: strings.ToLower(name), m: c.regex(key+"."+name, m[name])})
			}
		case "size_over", "size_under":
			n, ok := val.(int64)
			if !ok || n < 0 {
				c.fail(key, syntax.WantErr("a number of bytes (0 or more)", val))
			}
			parts = append(parts, sizeNode{n: n, over: k == "size_over"})
		case "all", "any":
			arr, ok := val.([]map[string]any)
			var items []any
			if ok {
				for _, x := range arr {
					items = append(items, x)
				}
			} else if a, isArr := val.([]any); isArr {
				items = a
			} else {
				c.fail(key, syntax.WantErr("an array of condition tables", val))
				continue
			}
			if len(items) == 0 {
				c.fail(key, errors.New("empty array"))
			}
			var sub []node
			for i, x := range items {
				sub = append(sub, c.table(fmt.Sprintf("%s[%d]", key, i), x))
			}
			if k == "all" {
				parts = append(parts, and(sub))
			} else {
				parts = append(parts, or(sub))
			}
		case "not":
			parts = append(parts, notNode{c.table(key, val)})
		default:
			c.fail(key, fmt.Errorf("unknown condition%s (known: %s)", suggest(k), strings.Join(Keys(), ", ")))
		}
	}
	if len(rcpt) > 0 {
		parts = append(parts, rcptNode{all: rcptMatch == "all", ms: rcpt})
	} else if _, ok := t["rcpt_match"]; ok {
		c.fail(prefix+".rcpt_match", errors.New("without rcpt, rcpt_domain, rcpt_regex or rcpt_file"))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return and(parts)
}

func suggest(k string) string {
	if s := syntax.Suggest(k, Keys()); s != "" {
		return fmt.Sprintf(" (did you mean %s?)", s)
	}
	return ""
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// list reads a string or an array of strings (lower-cased when fold).
func (c *compiler) list(key string, v any, fold bool) []string {
	var out []string
	add := func(s string) {
		if fold {
			s = strings.ToLower(s)
		}
		out = append(out, s)
	}
	switch x := v.(type) {
	case string:
		add(x)
	case []any:
		if len(x) == 0 {
			c.fail(key, errors.New("empty list"))
		}
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				c.fail(fmt.Sprintf("%s[%d]", key, i), syntax.WantErr("a string", e))
				continue
			}
			add(s)
		}
	default:
		c.fail(key, syntax.WantErr("a string or an array of strings", v))
	}
	return out
}

func (c *compiler) set(key string, v any, fold bool) map[string]bool {
	m := make(map[string]bool)
	for _, s := range c.list(key, v, fold) {
		m[s] = true
	}
	return m
}

func (c *compiler) regex(key string, v any) strMatch {
	s, ok := v.(string)
	if !ok {
		c.fail(key, syntax.WantErr("a regular expression (string)", v))
		return setMatch(nil)
	}
	re, err := CompileRegex(s)
	if err != nil {
		c.fail(key, err)
		return setMatch(nil)
	}
	return reMatch{re}
}

// Limits on what a condition may hold (see the package doc).
const (
	MaxRegexLen   = 4096
	MaxRegexInst  = 20000
	MaxListBytes  = 64 << 20
	listReadTries = 3
)

// CompileRegex compiles a regular expression of a condition or a rule
// (RE2 syntax: linear-time matching), refusing one longer than
// MaxRegexLen bytes or whose program exceeds MaxRegexInst instructions,
// so that no configuration can make matching slow or memory-hungry.
func CompileRegex(s string) (*regexp.Regexp, error) {
	if len(s) > MaxRegexLen {
		return nil, fmt.Errorf("regular expression too long: %d bytes (the limit is %d)", len(s), MaxRegexLen)
	}
	re, err := resyntax.Parse(s, resyntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("bad regular expression: %w", err)
	}
	prog, err := resyntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("bad regular expression: %w", err)
	}
	if n := len(prog.Inst); n > MaxRegexInst {
		return nil, fmt.Errorf("regular expression too large: %d instructions compiled (the limit is %d; repeat counts multiply)", n, MaxRegexInst)
	}
	out, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("bad regular expression: %w", err)
	}
	return out, nil
}

// snapshot reads a list file whole. A file that changes while it is read
// (its size or modification time differ before and after) is read again,
// up to listReadTries times, and then refused: no rule set is built from
// half a file. (Replace list files by renaming a complete new one into
// place: a rewrite in place that pauses between writes cannot be told
// from a shorter file.)
func (c *compiler) snapshot(path string) ([]byte, error) {
	stat := c.stat
	if stat == nil {
		stat = (*os.File).Stat
	}
	for try := 0; try < listReadTries; try++ {
		data, same, err := readStable(path, stat)
		if err != nil || same {
			return data, err
		}
	}
	return nil, fmt.Errorf("%s: changed while it was read, %d times: not loaded (replace a list file by renaming a new one into place)", path, listReadTries)
}

// readStable reads path whole and reports whether it stayed the same
// (size and modification time) while it was read.
func readStable(path string, stat func(*os.File) (os.FileInfo, error)) ([]byte, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	before, err := stat(f)
	if err != nil {
		return nil, false, err
	}
	if before.IsDir() {
		return nil, false, fmt.Errorf("%s: is a directory, not a list file", path)
	}
	if before.Size() > MaxListBytes {
		return nil, false, fmt.Errorf("%s: list file too large (%d bytes; the limit is %d)", path, before.Size(), MaxListBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxListBytes+1))
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxListBytes {
		return nil, false, fmt.Errorf("%s: list file too large (over %d bytes)", path, MaxListBytes)
	}
	after, err := stat(f)
	if err != nil {
		return nil, false, err
	}
	same := after.Size() == before.Size() && after.ModTime().Equal(before.ModTime()) && int64(len(data)) == after.Size()
	return data, same, nil
}

// readList reads a list file: one entry a line, # comments.
func (c *compiler) readList(path string, each func(line int, entry string) error) error {
	data, err := c.snapshot(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var errs []error
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if err := each(n, line); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, n, err))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: after line %d: %w", path, n, err))
	}
	return errors.Join(errs...)
}

func (c *compiler) files(key string, v any) []string {
	return c.list(key, v, false)
}

func (c *compiler) prefixes(key string, v any) node {
	n := newCIDR(key)
	for i, s := range c.list(key, v, false) {
		if err := n.add(s); err != nil {
			c.fail(fmt.Sprintf("%s[%d]", key, i), err)
		}
	}
	return n
}

func (c *compiler) clientFiles(key string, v any) node {
	n := newCIDR(key)
	for _, path := range c.files(key, v) {
		if err := c.readList(path, func(_ int, e string) error { return n.add(e) }); err != nil {
			c.fail(key, err)
		}
	}
	return n
}

func (c *compiler) addrFiles(key string, v any) strMatch {
	m := addrList{addrs: map[string]bool{}}
	var doms []string
	for _, path := range c.files(key, v) {
		err := c.readList(path, func(_ int, e string) error {
			e = strings.ToLower(e)
			switch {
			case strings.ContainsAny(e, " \t<>"):
				return fmt.Errorf("%q: want an address or a domain, one a line", e)
			case strings.Contains(e, "@"):
				m.addrs[e] = true
			default:
				doms = append(doms, e)
			}
			return nil
		})
		if err != nil {
			c.fail(key, err)
		}
	}
	m.doms = domainMatch(doms)
	return m
}

// Strings.

type strMatch interface{ match(s string) bool }

type setMatch map[string]bool

func (m setMatch) match(s string) bool { return m[strings.ToLower(s)] || m[s] }

type suffixMatch []string

func (m suffixMatch) match(s string) bool {
	s = strings.ToLower(s)
	for _, suf := range m {
		if strings.HasSuffix(s, suf) {
			return true
		}
	}
	return false
}

// domainMatch matches an address's domain (or a domain): "example.com"
// exactly, ".example.com" any subdomain of it.
type domainMatch []string

func (m domainMatch) match(s string) bool {
	s = strings.ToLower(s)
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	for _, d := range m {
		if s == d || (strings.HasPrefix(d, ".") && strings.HasSuffix(s, d)) {
			return true
		}
	}
	return false
}

type addrList struct {
	addrs map[string]bool
	doms  domainMatch
}

func (m addrList) match(s string) bool { return m.addrs[strings.ToLower(s)] || m.doms.match(s) }

type reMatch struct{ re *regexp.Regexp }

func (m reMatch) match(s string) bool { return m.re.MatchString(s) }

// Nodes.

type node = pmult.Condition

type andNode []node

func and(ns []node) andNode { return andNode(ns) }

func (a andNode) Eval(f *pmult.Facts) pmult.Tri { return evalAll(a, f, pmult.No) }

func (a andNode) Stage() pmult.Kind { return maxStage(a) }

func (a andNode) String() string { return join("all", a) }

type orNode []node

func or(ns []node) orNode { return orNode(ns) }

func (o orNode) Eval(f *pmult.Facts) pmult.Tri { return evalAll(o, f, pmult.Yes) }

// evalAll folds three-valued results: the first node yielding absorb
// decides (No for all, Yes for any); otherwise Unknown if any node is
// Unknown, else the identity (the opposite of absorb).
func evalAll(ns []node, f *pmult.Facts, absorb pmult.Tri) pmult.Tri {
	out := pmult.Yes
	if absorb == pmult.Yes {
		out = pmult.No
	}
	for _, n := range ns {
		switch n.Eval(f) {
		case absorb:
			return absorb
		case pmult.Unknown:
			out = pmult.Unknown
		}
	}
	return out
}

func (o orNode) Stage() pmult.Kind { return maxStage(o) }

func (o orNode) String() string { return join("any", o) }

func maxStage(ns []node) pmult.Kind {
	k := pmult.KindNone
	for _, n := range ns {
		k = max(k, n.Stage())
	}
	return k
}

func join(op string, ns []node) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = n.String()
	}
	return op + "(" + strings.Join(parts, ", ") + ")"
}

type notNode struct{ n node }

func (n notNode) Eval(f *pmult.Facts) pmult.Tri { return n.n.Eval(f).Not() }
func (n notNode) Stage() pmult.Kind             { return n.n.Stage() }
func (n notNode) String() string                { return "not(" + n.n.String() + ")" }

func tri(b bool) pmult.Tri {
	if b {
		return pmult.Yes
	}
	return pmult.No
}

type listenerNode map[string]bool

func (l listenerNode) Eval(f *pmult.Facts) pmult.Tri { return tri(l[f.Listener]) }
func (l listenerNode) Stage() pmult.Kind             { return pmult.KindNone }
func (l listenerNode) String() string {
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	slices.Sort(names)
	return "listener=" + strings.Join(names, "|")
}

func hostName(f *pmult.Facts) string { return f.Hostname }
func helo(f *pmult.Facts) string     { return f.Helo }
func sender(f *pmult.Facts) string   { return f.Sender }
func authUser(f *pmult.Facts) string { v, _ := f.Macro("auth_authen"); return v }

// strNode tests one string fact, known from stage kind.
type strNode struct {
	kind pmult.Kind
	get  func(*pmult.Facts) string
	m    strMatch
	desc string
}

func (n strNode) Eval(f *pmult.Facts) pmult.Tri {
	if f.At < n.kind {
		return pmult.Unknown
	}
	return tri(n.m.match(n.get(f)))
}
func (n strNode) Stage() pmult.Kind { return n.kind }
func (n strNode) String() string    { return n.desc }

type authNode bool

func (a authNode) Eval(f *pmult.Facts) pmult.Tri {
	if f.At < pmult.KindMail {
		return pmult.Unknown
	}
	v, _ := f.Macro("auth_authen")
	return tri((v != "") == bool(a))
}
func (a authNode) Stage() pmult.Kind { return pmult.KindMail }
func (a authNode) String() string    { return fmt.Sprintf("auth=%v", bool(a)) }

// macroStage is where a macro is known at the latest (Postfix's default
// milter_*_macros); a macro that comes earlier decides at once.
func macroStage(name string) pmult.Kind {
	n := strings.Trim(name, "{}")
	switch {
	case strings.HasPrefix(n, "auth_"), strings.HasPrefix(n, "mail_"):
		return pmult.KindMail
	case strings.HasPrefix(n, "rcpt_"):
		return pmult.KindRcpt
	case n == "i":
		return pmult.KindData
	case n == "j", n == "_", n == "listener", strings.HasPrefix(n, "daemon_"), strings.HasPrefix(n, "if_"),
		strings.HasPrefix(n, "client_"), n == "v":
		return pmult.KindConnect
	}
	return pmult.KindMail
}

type macroNode struct {
	name  string
	stage pmult.Kind
	m     strMatch
}

func (n macroNode) Eval(f *pmult.Facts) pmult.Tri {
	v, ok := f.Macro(n.name)
	if !ok && f.At < n.stage {
		return pmult.Unknown
	}
	return tri(n.m.match(v))
}
func (n macroNode) Stage() pmult.Kind { return n.stage }
func (n macroNode) String() string    { return "macro {" + n.name + "}" }

type rcptNode struct {
	all bool
	ms  []strMatch // every one must match a recipient
}

func (n rcptNode) one(r string) bool {
	for _, m := range n.ms {
		if !m.match(r) {
			return false
		}
	}
	return true
}

func (n rcptNode) Eval(f *pmult.Facts) pmult.Tri {
	if f.At < pmult.KindMail {
		return pmult.Unknown
	}
	for _, r := range f.Rcpts {
		ok := n.one(r)
		if ok && !n.all {
			return pmult.Yes
		}
		if !ok && n.all {
			return pmult.No
		}
	}
	if f.At < pmult.KindData {
		return pmult.Unknown
	}
	return tri(n.all)
}
func (n rcptNode) Stage() pmult.Kind { return pmult.KindData }
func (n rcptNode) String() string {
	if n.all {
		return "rcpt(all)"
	}
	return "rcpt(any)"
}

type headerNode struct {
	name string // lower case
	m    strMatch
}

func (n headerNode) Eval(f *pmult.Facts) pmult.Tri {
	if f.At < pmult.KindMail {
		return pmult.Unknown
	}
	for _, h := range f.Headers {
		if strings.EqualFold(h.Name, n.name) && (n.m == nil || n.m.match(strings.TrimPrefix(h.Value, " "))) {
			return pmult.Yes
		}
	}
	if f.At < pmult.KindEOH {
		return pmult.Unknown
	}
	return pmult.No
}
func (n headerNode) Stage() pmult.Kind { return pmult.KindEOH }
func (n headerNode) String() string    { return "header " + n.name }

type sizeNode struct {
	n    int64
	over bool
}

func (n sizeNode) Eval(f *pmult.Facts) pmult.Tri {
	if f.At < pmult.KindMail {
		return pmult.Unknown
	}
	if f.Size > n.n {
		return tri(n.over)
	}
	if f.At < pmult.KindEOM {
		return pmult.Unknown
	}
	return tri(!n.over)
}
func (n sizeNode) Stage() pmult.Kind { return pmult.KindEOM }
func (n sizeNode) String() string {
	if n.over {
		return fmt.Sprintf("size>%d", n.n)
	}
	return fmt.Sprintf("size<=%d", n.n)
}

// cidrNode matches the client address against prefixes: one set per
// prefix length, so a lookup costs one map probe per length in use.
type cidrNode struct {
	desc string
	lens []int // distinct prefix lengths (IPv4 as 4in6-free addresses)
	set  map[netip.Prefix]bool
}

func newCIDR(desc string) *cidrNode { return &cidrNode{desc: desc, set: map[netip.Prefix]bool{}} }

func (n *cidrNode) add(s string) error {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return fmt.Errorf("%q: not an address or CIDR", s)
	}
	p = p.Masked()
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	key := p.Bits()
	if p.Addr().Is6() {
		key += 1000
	}
	if !slices.Contains(n.lens, key) {
		n.lens = append(n.lens, key)
	}
	n.set[p] = true
	return nil
}

func (n *cidrNode) Eval(f *pmult.Facts) pmult.Tri {
	if f.At < pmult.KindConnect {
		return pmult.Unknown
	}
	a, err := netip.ParseAddr(strings.Trim(f.Address, "[]"))
	if err != nil {
		return pmult.No
	}
	a = a.Unmap()
	for _, l := range n.lens {
		bits := l
		if l >= 1000 {
			if !a.Is6() {
				continue
			}
			bits -= 1000
		} else if !a.Is4() {
			continue
		}
		p, err := a.Prefix(bits)
		if err == nil && n.set[p] {
			return pmult.Yes
		}
	}
	return pmult.No
}
func (n *cidrNode) Stage() pmult.Kind { return pmult.KindConnect }
func (n *cidrNode) String() string    { return n.desc }
