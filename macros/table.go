// table.go: macro translation tables (issue 12): rename, alias, default,
// set and drop rules applied to the macro pairs of one stage, the names
// pmult can derive itself (Derivable), the built-in dialect tables
// (Builtin), and ParseTable, which reads a table from its decoded TOML.
//
//	rename  = { "{tls_cipher_suite}" = "{cipher}" }   # one name to another (the old one goes)
//	alias   = { "{daemon_addr}" = "{if_addr}" }       # a copy under another name, when absent
//	default = { "{auth_type}" = "none" }              # a value when the MTA sent none (or "")
//	set     = { "connect:{daemon_name}" = "ORIGINATING" } # a fixed value, sent or not
//	drop    = ["{b}"]                                  # never passed on
//
// A default or set key may carry its stage ("mail:{auth_type}"); without
// one it applies at the stage where Postfix or Sendmail send the name by
// default (DefaultStage), else at connect. The value is added at that
// stage when the MTA did not send the name, replaces (set) or fills in
// (default, when empty) the MTA's value at any stage where it comes, and
// is offered (Offered) to a backend asking for it at a later stage. Rules
// apply in the order drop, rename, alias, set, default.

package macros

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Entry is one default or set rule: Name (normalised) gets Value at Stage.
type Entry struct {
	Stage Stage
	Name  string
	Value string
}

// Table is one translation table. The zero value changes nothing. Names
// are kept normalised (without braces).
type Table struct {
	Rename  map[string]string
	Alias   map[string]string
	Default []Entry
	Set     []Entry
	Drop    []string

	aliasOrder []string // Alias's keys sorted (Chain makes it)
}

// Empty reports whether the table has no rule.
func (t *Table) Empty() bool {
	return t == nil || len(t.Rename) == 0 && len(t.Alias) == 0 && len(t.Default) == 0 && len(t.Set) == 0 && len(t.Drop) == 0
}

// Apply returns the pairs of stage st after the table's rules; pairs is
// not modified (and is returned as it is when no rule changes it). The
// names it adds are in wire form.
func (t *Table) Apply(st Stage, pairs []string) []string {
	if t.Empty() {
		return pairs
	}
	out := pairs
	owned := false // out is a copy Apply may change
	own := func() {
		if !owned {
			out = append(make([]string, 0, len(out)+2*(len(t.Set)+len(t.Default)+len(t.Alias))), out...)
			owned = true
		}
	}
	if t.dropsOrRenames(pairs) {
		out = make([]string, 0, len(pairs)+2*(len(t.Set)+len(t.Default)+len(t.Alias)))
		owned = true
		for i := 0; i+1 < len(pairs); i += 2 {
			n := Normalize(pairs[i])
			if slices.Contains(t.Drop, n) {
				continue
			}
			name := pairs[i]
			if to, ok := t.Rename[n]; ok {
				name = Wire(to)
			}
			out = append(out, name, pairs[i+1])
		}
	}
	if len(t.Alias) > 0 {
		keys := t.aliasOrder
		if len(keys) != len(t.Alias) { // not made by Chain
			keys = make([]string, 0, len(t.Alias))
			for k := range t.Alias {
				keys = append(keys, k)
			}
			sort.Strings(keys)
		}
		for _, from := range keys {
			to := t.Alias[from]
			if v, ok := Lookup(out, from); ok {
				if _, has := Lookup(out, to); !has {
					own()
					out = append(out, Wire(to), v)
				}
			}
		}
	}
	for _, e := range t.Set {
		if v, ok := Lookup(out, e.Name); ok && v != e.Value || !ok && e.Stage == st {
			own()
			out = put(out, e.Name, e.Value)
		}
	}
	for _, e := range t.Default {
		v, ok := Lookup(out, e.Name)
		if ok && v == "" || !ok && e.Stage == st {
			own()
			out = put(out, e.Name, e.Value)
		}
	}
	return out
}

// dropsOrRenames reports whether a drop or rename rule applies to a name
// in pairs.
func (t *Table) dropsOrRenames(pairs []string) bool {
	if len(t.Drop) == 0 && len(t.Rename) == 0 {
		return false
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		n := Normalize(pairs[i])
		if _, ok := t.Rename[n]; ok || slices.Contains(t.Drop, n) {
			return true
		}
	}
	return false
}

// Offered returns the set and default values that exist at stage st (their
// stage or a later one) as name, value pairs in wire form, set ones first:
// for a backend that asks for one of them at a later stage, where the MTA
// did not send it.
func (t *Table) Offered(st Stage) []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, l := range [][]Entry{t.Set, t.Default} {
		for _, e := range l {
			if e.Stage <= st {
				if _, dup := Lookup(out, e.Name); !dup {
					out = append(out, Wire(e.Name), e.Value)
				}
			}
		}
	}
	return out
}

// Provides reports whether the table gives name a value at stage st
// whatever the MTA sent (a set or default rule of that stage or an
// earlier one).
func (t *Table) Provides(st Stage, name string) bool {
	if t == nil {
		return false
	}
	n := Normalize(name)
	for _, l := range [][]Entry{t.Set, t.Default} {
		for _, e := range l {
			if e.Stage <= st && e.Name == n {
				return true
			}
		}
	}
	return false
}

// Chain merges tables in order (nil ones skipped): a later rename or
// alias of the same name wins; later set and default rules apply after
// the earlier ones (so a later set wins).
func Chain(tables ...*Table) *Table {
	out := &Table{}
	for _, t := range tables {
		if t == nil {
			continue
		}
		for k, v := range t.Rename {
			if out.Rename == nil {
				out.Rename = map[string]string{}
			}
			out.Rename[k] = v
		}
		for k, v := range t.Alias {
			if out.Alias == nil {
				out.Alias = map[string]string{}
			}
			out.Alias[k] = v
		}
		out.Default = append(out.Default, t.Default...)
		out.Set = append(out.Set, t.Set...)
		out.Drop = append(out.Drop, t.Drop...)
	}
	for k := range out.Alias {
		out.aliasOrder = append(out.aliasOrder, k)
	}
	sort.Strings(out.aliasOrder)
	return out
}

// put sets name (normalised) to value in pairs, replacing its value when
// present, else appending it in wire form.
func put(pairs []string, name, value string) []string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if Normalize(pairs[i]) == name {
			pairs[i+1] = value
			return pairs
		}
	}
	return append(pairs, Wire(name), value)
}

// Lookup returns the value of name (any form) in pairs.
func Lookup(pairs []string, name string) (string, bool) {
	n := Normalize(name)
	for i := 0; i+1 < len(pairs); i += 2 {
		if Normalize(pairs[i]) == n {
			return pairs[i+1], true
		}
	}
	return "", false
}

// DefaultStage is where a default or set rule without a stage applies: the
// first stage whose Postfix or Sendmail default list has the name, else
// connect.
func DefaultStage(name string) Stage {
	n := Normalize(name)
	for st := Connect; st < NumStages; st++ {
		for _, l := range [][]string{PostfixDefaults[st], SendmailDefaults[st]} {
			for _, m := range l {
				if Normalize(m) == n {
					return st
				}
			}
		}
	}
	return Connect
}

// ParseStage parses a stage name as the [mta_macros] table writes it:
// connect, helo, mail (envfrom), rcpt (envrcpt), data, eoh, eom.
func ParseStage(s string) (Stage, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "connect":
		return Connect, nil
	case "helo":
		return Helo, nil
	case "mail", "envfrom":
		return EnvFrom, nil
	case "rcpt", "envrcpt":
		return EnvRcpt, nil
	case "data":
		return Data, nil
	case "eoh":
		return EOH, nil
	case "eom":
		return EOM, nil
	}
	return 0, fmt.Errorf("unknown stage %q (want connect, helo, mail, rcpt, data, eoh or eom)", s)
}

// Derivable lists the macros pmult can synthesise from what it knows of
// the session (normalised names), and the first stage each exists at:
// offered to a backend that asked for one of them when the MTA did not
// send it.
var Derivable = map[string]Stage{
	"client_addr": Connect, "client_name": Connect, "client_port": Connect, "client_resolve": Connect,
	"listener": Connect, "multiplexer": Connect, "mult_version": Connect,
	"s":         Helo,
	"mail_addr": EnvFrom, "mail_host": EnvFrom, "i": EnvFrom, "nrcpts": EnvFrom,
	"rcpt_addr": EnvRcpt, "rcpt_host": EnvRcpt,
}

// DerivableNames are the keys of Derivable, in a fixed order.
var DerivableNames = []string{"client_addr", "client_name", "client_port", "client_resolve",
	"listener", "multiplexer", "mult_version", "s", "mail_addr", "mail_host", "i", "nrcpts",
	"rcpt_addr", "rcpt_host"}

// CanDerive reports whether pmult can synthesise name at stage st.
func CanDerive(st Stage, name string) bool {
	first, ok := Derivable[Normalize(name)]
	if !ok {
		return false
	}
	if n := Normalize(name); n == "rcpt_addr" || n == "rcpt_host" {
		return st == EnvRcpt
	}
	return st >= first
}

// MTAKnown are the macros Postfix or Sendmail can send (normalised):
// pmult asks the MTA for a backend's list (SMFIR_SETSYMLIST), so a name
// here is provided by the MTA when it has a value.
var MTAKnown = []string{"j", "_", "v", "daemon_name", "daemon_addr", "daemon_port", "if_name", "if_addr",
	"client_addr", "client_port", "client_name", "client_ptr", "client_connections", "client_resolve",
	"tls_version", "cipher", "cipher_bits", "cert_subject", "cert_issuer", "i", "auth_type", "auth_authen",
	"auth_author", "auth_ssf", "mail_addr", "mail_host", "mail_mailer", "rcpt_addr", "rcpt_host",
	"rcpt_mailer", "msg_id"}

// Dialects are the names of the built-in tables.
var Dialects = []string{"milter", "meta1", "none"}

// Builtin returns the built-in table of a front-end dialect: "milter"
// (Postfix and Sendmail: each one's name for the same thing is added when
// only the other was sent), "meta1" (MeTA1's names copied to their
// Sendmail names, as the mailfromd manual's pmult table), "none".
func Builtin(dialect string) (*Table, bool) {
	switch dialect {
	case "milter":
		return &Table{Alias: map[string]string{
			"daemon_addr": "if_addr", // Postfix: the server address; Sendmail {if_addr}
			"if_addr":     "daemon_addr",
			"j":           "if_name", // the server's name
		}}, true
	case "meta1":
		return &Table{Alias: map[string]string{
			"tls_cipher_suite": "cipher", "tls_cipher_bits": "cipher_bits",
			"tls_cert_subject": "cert_subject", "tls_cert_issuer": "cert_issuer",
			"tls_cn_subject": "cn_subject", "tls_cn_issuer": "cn_issuer",
			"tls_alg_bits": "alg_bits", "tls_vrfy": "verify",
			"hostname": "j", "msgid": "msg_id", // c is the hop count in both
		}}, true
	case "none", "":
		return &Table{}, true
	}
	return nil, false
}

// TableError is one problem of a table: Key is the place within it
// ("set.connect:{daemon_name}", "drop[1]").
type TableError struct {
	Key string
	Err error
}

func (e *TableError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *TableError) Unwrap() error { return e.Err }

// TableKeys are the keys a table may have.
var TableKeys = []string{"rename", "alias", "default", "set", "drop"}

// ParseTable reads a table from its decoded TOML (a map of the keys of
// TableKeys; other keys are the caller's, skip lists them). It returns
// every problem.
func ParseTable(raw map[string]any, skip ...string) (*Table, []error) {
	t := &Table{}
	var errs []error
	fail := func(key string, err error) { errs = append(errs, &TableError{Key: key, Err: err}) }
	name := func(key, s string) (string, bool) {
		n := Normalize(strings.TrimSpace(s))
		if n == "" || strings.ContainsAny(n, "{} \t,") {
			fail(key, fmt.Errorf("bad macro name %q (want a name like i or {daemon_name})", s))
			return "", false
		}
		return n, true
	}
	strMap := func(key string, val any) map[string]string {
		m, ok := val.(map[string]any)
		if !ok {
			fail(key, fmt.Errorf("want a table of macro names to strings, got %T", val))
			return nil
		}
		out := make(map[string]string, len(m))
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				fail(key+"."+k, fmt.Errorf("want a string, got %T", v))
				continue
			}
			out[k] = s
		}
		return out
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		val := raw[key]
		switch key {
		case "rename", "alias":
			m := map[string]string{}
			for from, to := range strMap(key, val) {
				f, ok1 := name(key+"."+from, from)
				tn, ok2 := name(key+"."+from, to)
				if ok1 && ok2 {
					if f == tn {
						fail(key+"."+from, fmt.Errorf("renames %s to itself", from))
						continue
					}
					m[f] = tn
				}
			}
			if key == "rename" {
				t.Rename = m
			} else {
				t.Alias = m
			}
		case "default", "set":
			sm := strMap(key, val)
			ks := make([]string, 0, len(sm))
			for k := range sm {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			var list []Entry
			for _, k := range ks {
				e := Entry{Value: sm[k]}
				nm := k
				if st, n, ok := strings.Cut(k, ":"); ok {
					s, err := ParseStage(st)
					if err != nil {
						fail(key+"."+k, err)
						continue
					}
					e.Stage, nm = s, n
				}
				n, ok := name(key+"."+k, nm)
				if !ok {
					continue
				}
				e.Name = n
				if !strings.Contains(k, ":") {
					e.Stage = DefaultStage(n)
				}
				list = append(list, e)
			}
			if key == "default" {
				t.Default = list
			} else {
				t.Set = list
			}
		case "drop":
			arr, ok := val.([]any)
			if !ok {
				fail(key, fmt.Errorf("want an array of macro names, got %T", val))
				continue
			}
			for i, e := range arr {
				s, ok := e.(string)
				if !ok {
					fail(fmt.Sprintf("drop[%d]", i), fmt.Errorf("want a string, got %T", e))
					continue
				}
				if n, ok := name(fmt.Sprintf("drop[%d]", i), s); ok {
					t.Drop = append(t.Drop, n)
				}
			}
		default:
			if !slices.Contains(skip, key) {
				fail(key, fmt.Errorf("unknown key (want one of %s)", strings.Join(append(slices.Clone(TableKeys), skip...), ", ")))
			}
		}
	}
	for from := range t.Rename {
		if slices.Contains(t.Drop, from) {
			fail("rename."+from, fmt.Errorf("%s is also dropped", from))
		}
	}
	return t, errs
}
