// macros.go: the [macros] table (issue 12): the global macro translation
// table, the built-in dialect tables and one table per named listener.
//
//	[macros]
//	dialect = "auto"     # built-in table: auto (milter for the milter front, meta1 for MeTA1), milter, meta1, none
//	rename = { "{auth_method}" = "{auth_type}" }
//	alias = { "{daemon_addr}" = "{if_addr}" }
//	default = { "{auth_type}" = "" }
//	set = { }
//	drop = ["{b}"]
//
//	[macros.listener.submission]   # for the listener named submission (listen = ["submission=inet:..."])
//	set = { "connect:{daemon_name}" = "ORIGINATING" }
//
// A [[backend]] of type milter may carry its own macros table (same keys
// but dialect and listener), applied after these. See macros/table.go for
// what each rule does.

package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/mailmux/mailmux/macros"
	"github.com/mailmux/mailmux/pmult"
)

// DefaultDialect is [macros] dialect's default.
const DefaultDialect = "auto"

// Macros is the [macros] table.
type Macros struct {
	// Dialect picks the built-in table: "auto" (default: each front
	// end's own), or one of macros.Dialects for every front end.
	Dialect string
	// Global is the table of the [macros] keys (nil: none).
	Global *macros.Table
	// Listener holds the [macros.listener.NAME] tables.
	Listener map[string]*macros.Table
}

// Tables returns the engine's tables; version is {mult_version}.
func (m Macros) Tables(version string) *pmult.MacroTables {
	t := &pmult.MacroTables{Global: m.Global, Listener: m.Listener, Version: version,
		Dialect: map[string]*macros.Table{}}
	for _, front := range []string{"milter", "meta1", "smtp"} {
		d := m.Dialect
		if d == "" || d == "auto" {
			d = front
			if front == "smtp" {
				d = "milter" // the SMTP front sends milter (Postfix) macro names
			}
		}
		t.Dialect[front], _ = macros.Builtin(d)
	}
	return t
}

// listenerName is what a listen entry's name may be.
var listenerName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// splitListenName splits "name=address" (a named listener) into its name
// and address; an entry without a valid name before "=" is all address.
func splitListenName(s string) (name, addr string) {
	if n, a, ok := strings.Cut(s, "="); ok && listenerName.MatchString(strings.TrimSpace(n)) {
		return strings.TrimSpace(n), strings.TrimSpace(a)
	}
	return "", s
}

// macroTables validates [macros].
func (v *validator) macroTables(cfg *Config, raw map[string]any) {
	top := scope{v: v, backend: -1}
	cfg.Macros.Dialect = DefaultDialect
	if raw == nil {
		return
	}
	cfg.Macros.Dialect = top.enum("macros.dialect", raw["dialect"], DefaultDialect, "dialect",
		append([]string{"auto"}, macros.Dialects...)...)
	t, errs := macros.ParseTable(raw, "dialect", "listener")
	v.tableErrs("macros.", errs)
	cfg.Macros.Global = t
	switch l := raw["listener"].(type) {
	case nil:
	case map[string]any:
		names := make([]string, 0, len(l))
		for n := range l {
			names = append(names, n)
		}
		sort.Strings(names)
		cfg.Macros.Listener = map[string]*macros.Table{}
		for _, n := range names {
			field := "macros.listener." + n
			sub, ok := l[n].(map[string]any)
			if !ok {
				top.fail(field, wantErr("a table", l[n]))
				continue
			}
			if !slices.Contains(cfg.Milter.ListenNames, n) && !slices.Contains(cfg.Meta1.ListenNames, n) &&
				!slices.Contains(cfg.Smtp.ListenNames, n) {
				top.fail(field, fmt.Errorf("no listener is named %q (name one in listen: \"%s=inet:...\")", n, n))
			}
			t, errs := macros.ParseTable(sub)
			v.tableErrs(field+".", errs)
			cfg.Macros.Listener[n] = t
		}
	default:
		top.fail("macros.listener", wantErr("a table of listener tables", raw["listener"]))
	}
}

// tableErrs records the errors of macros.ParseTable, placed under prefix.
func (v *validator) tableErrs(prefix string, errs []error) {
	top := scope{v: v, backend: -1}
	for _, err := range errs {
		var te *macros.TableError
		if errors.As(err, &te) {
			top.fail(prefix+te.Key, te.Err)
		} else {
			top.fail(strings.TrimSuffix(prefix, "."), err)
		}
	}
}
