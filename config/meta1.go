// meta1.go: the [meta1] table: pmult's MeTA1 (policy milter) front end, the
// TOML equivalents of mailfromd's pmult statements, and their validation.
//
//	[meta1]
//	listen = ["inet://127.0.0.1:3333"]  # pmult: listen (none: no MeTA1 front)
//	max_sessions = 0        # pmult: max-threads-hard (concurrent SMTP sessions; 0: no limit)
//	max_sessions_soft = 0   # pmult: max-threads-soft (log above it; 0: never)
//	max_connections = 0     # pmult: max-pmilter-fd (concurrent smtps connections; 0: no limit)
//	pm_macros_max = 8       # MeTA1's PM_MACROS_MAX: macros per stage
//	auth_macros = false     # pmult: auth-macros (auth_type, auth_authen, auth_author at mail)
//	pmilter_debug = 0       # pmult: pmilter-debug 0..100 (>0: debug log of the MeTA1 front)
//
//	[meta1.define_macros]   # pmult: define-macros HANDLER (MACROS)
//	mail = ["auth_type", "tls_vrfy"]
//	dot = ["msgid"]
//
// Everything is optional; an absent table leaves the MeTA1 front off (and
// the zero Meta1 value). define_macros keys are pmult's handler names
// (connect, helo, mail/envfrom, rcpt/envrcpt, data/header/body, dot/eom);
// the macro restrictions of macros.CheckMeta1Macros are errors here.

package config

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/mailmux/mailmux/macros"
)

// Meta1 is the [meta1] table.
type Meta1 struct {
	Listen          []string            `toml:"listen"`
	MaxSessions     int                 `toml:"max_sessions"`
	MaxSessionsSoft int                 `toml:"max_sessions_soft"`
	MaxConnections  int                 `toml:"max_connections"`
	MacrosMax       int                 `toml:"pm_macros_max"`
	AuthMacros      bool                `toml:"auth_macros"`
	PmilterDebug    int                 `toml:"pmilter_debug"`
	DefineMacros    map[string][]string `toml:"define_macros"`

	// ListenAddrs are the parsed Listen addresses.
	ListenAddrs []Address `toml:"-"`
	// ListenNames are their names ("" for an unnamed one), as in
	// [milter] listen ("name=address").
	ListenNames []string `toml:"-"`
	// Macros are the MeTA1 macros to request per stage, canonical names,
	// auth_macros included, validated.
	Macros [macros.M1NumStages][]string `toml:"-"`
}

type rawMeta1 struct {
	Listen          any `toml:"listen"`
	MaxSessions     any `toml:"max_sessions"`
	MaxSessionsSoft any `toml:"max_sessions_soft"`
	MaxConnections  any `toml:"max_connections"`
	MacrosMax       any `toml:"pm_macros_max"`
	AuthMacros      any `toml:"auth_macros"`
	PmilterDebug    any `toml:"pmilter_debug"`
	DefineMacros    any `toml:"define_macros"`
}

// meta1 validates the [meta1] table (raw is nil when it is absent).
func (v *validator) meta1(cfg *Config, raw *rawMeta1) {
	if raw == nil {
		return
	}
	top := scope{v: v, backend: -1}
	f := func(k string) string { return "meta1." + k }
	m := &cfg.Meta1
	m.MaxSessions = top.integer(f("max_sessions"), raw.MaxSessions, 0, 0, math.MaxInt)
	m.MaxSessionsSoft = top.integer(f("max_sessions_soft"), raw.MaxSessionsSoft, 0, 0, math.MaxInt)
	m.MaxConnections = top.integer(f("max_connections"), raw.MaxConnections, 0, 0, math.MaxInt)
	m.MacrosMax = top.integer(f("pm_macros_max"), raw.MacrosMax, macros.DefaultMeta1MaxMacros, 1, 1024)
	m.AuthMacros = top.boolean(f("auth_macros"), raw.AuthMacros)
	m.PmilterDebug = top.integer(f("pmilter_debug"), raw.PmilterDebug, 0, 0, 100)

	type item struct{ field, text string }
	var items []item
	switch x := raw.Listen.(type) {
	case nil:
	case string:
		items = []item{{f("listen"), x}}
	case []any:
		for i, e := range x {
			field := fmt.Sprintf("meta1.listen[%d]", i)
			if s, ok := e.(string); ok {
				items = append(items, item{field, s})
			} else {
				top.fail(field, wantErr("a string", e))
			}
		}
	default:
		top.fail(f("listen"), wantErr("a string or an array of strings", raw.Listen))
	}
	for _, it := range items {
		field, s := it.field, it.text
		m.Listen = append(m.Listen, s)
		name, addr := splitListenName(s)
		a, err := ParseAddress(addr)
		if err != nil {
			top.fail(field, err)
			continue
		}
		for _, o := range cfg.Milter.ListenAddrs {
			if o.Network == a.Network && o.Addr == a.Addr {
				top.fail(field, fmt.Errorf("address %q is also a milter listen address", s))
			}
		}
		v.claimName(field, name)
		m.ListenAddrs = append(m.ListenAddrs, a)
		m.ListenNames = append(m.ListenNames, name)
	}

	requested := [macros.M1NumStages][]string{}
	if raw.DefineMacros != nil {
		tbl, ok := raw.DefineMacros.(map[string]any)
		if !ok {
			top.fail(f("define_macros"), wantErr("a table of handler = [macro, …]", raw.DefineMacros))
		}
		keys := make([]string, 0, len(tbl))
		for k := range tbl {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		m.DefineMacros = map[string][]string{}
		for _, k := range keys {
			field := f("define_macros." + k)
			st, err := macros.ParseMeta1Stage(k)
			if err != nil {
				top.fail(field, err)
				continue
			}
			var names []string
			switch x := tbl[k].(type) {
			case string:
				names = macros.Split(x)
			case []any:
				for i, e := range x {
					if s, ok := e.(string); ok {
						names = append(names, s)
					} else {
						top.fail(fmt.Sprintf("%s[%d]", field, i), wantErr("a string", e))
					}
				}
			default:
				top.fail(field, wantErr("an array of macro names", tbl[k]))
				continue
			}
			m.DefineMacros[k] = names
			requested[st] = append(requested[st], names...)
		}
	}
	if m.AuthMacros {
		requested[macros.M1Mail] = append(requested[macros.M1Mail], macros.AuthMacros...)
	}
	for st := macros.Meta1Stage(0); st < macros.M1NumStages; st++ {
		if len(requested[st]) == 0 {
			continue
		}
		names, errs := macros.CheckMeta1Macros(st, requested[st], m.MacrosMax)
		for _, err := range errs {
			top.fail(f("define_macros."+st.String()), err)
		}
		m.Macros[st] = names
	}
	if len(m.Listen) == 0 && (m.DefineMacros != nil || m.AuthMacros) {
		top.fail(f("listen"), errors.New("MeTA1 macros are configured but the MeTA1 front has no listen address"))
	}
}
