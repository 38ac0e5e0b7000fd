// config.go: the keys of a [[backend]] table of type "filter" (its
// [[backend.rule]] tables), their validation and the backend.

package filter

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/mailmux/mailmux/config/syntax"
	"github.com/mailmux/mailmux/internal/cond"
	"github.com/mailmux/mailmux/pmult"
)

// Keys are the filter's own keys.
func Keys() []string { return []string{"rule"} }

// Renamed: no old spellings.
func Renamed() map[string]string { return map[string]string{} }

// Settings are a filter's compiled rules.
type Settings struct{ Rules []Rule }

// DefaultBodyMax is how many body bytes a body_regex reads by default.
const DefaultBodyMax = 64 << 10

var ruleKeys = []string{"match", "body_regex", "body_max", "action", "code", "xcode", "text", "name", "value",
	"value_regex", "index", "addr", "reason", "macro", "macros", "override", "from"}

var actions = []string{"continue", "accept", "reject", "tempfail", "discard", "quarantine", "add_header",
	"insert_header", "change_header", "delete_header", "change_sender", "add_rcpt", "delete_rcpt", "set_macro"}

// macroStages are the stages a set_macro's from may name.
var macroStages = map[string]pmult.Kind{"connect": pmult.KindConnect, "helo": pmult.KindHelo,
	"mail": pmult.KindMail, "rcpt": pmult.KindRcpt, "data": pmult.KindData, "eoh": pmult.KindEOH,
	"eom": pmult.KindEOM}

// ParseConfig reads and compiles the rules; every error is a
// *syntax.KeyError naming its rule ("rule[2].action").
func ParseConfig(decode func(any) error) (*Settings, []error) {
	var raw struct {
		Rule []map[string]any `toml:"rule"`
	}
	var c syntax.Checker
	if err := decode(&raw); err != nil {
		c.Fail("rule", err)
		return &Settings{}, c.Errs
	}
	if len(raw.Rule) == 0 {
		c.Fail("rule", errors.New("a filter needs at least one [[backend.rule]]"))
	}
	s := &Settings{}
	for i, m := range raw.Rule {
		p := fmt.Sprintf("rule[%d].", i)
		for k := range m {
			if !slicesContains(ruleKeys, k) {
				msg := "unknown key"
				if sug := syntax.Suggest(k, ruleKeys); sug != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", sug)
				}
				c.Fail(p+k, errors.New(msg))
			}
		}
		r := Rule{Action: c.Enum(p+"action", m["action"], "", "action", actions...)}
		if m["action"] == nil {
			c.Fail(p+"action", errors.New("missing"))
		}
		if mv, ok := m["match"]; ok {
			cd, errs := cond.Compile(p+"match", mv)
			c.Errs = append(c.Errs, errs...)
			r.Match = cd
		}
		str := func(k string) string { return c.String(p+k, m[k]) }
		if v := str("body_regex"); v != "" {
			re, err := cond.CompileRegex(v)
			if err != nil {
				c.Fail(p+"body_regex", err)
			}
			r.Body = re
			r.BodyMax = c.Int(p+"body_max", m["body_max"], DefaultBodyMax, 1, 64<<20)
		} else if m["body_max"] != nil {
			c.Fail(p+"body_max", errors.New("without body_regex"))
		}
		need := func(k string) string {
			v := str(k)
			if v == "" {
				c.Fail(p+k, fmt.Errorf("required for action %s", r.Action))
			}
			return v
		}
		switch r.Action {
		case "reject", "tempfail":
			code, xcode := "550", "5.7.1"
			if r.Action == "tempfail" {
				code, xcode = "451", "4.7.1"
			}
			if v := str("code"); v != "" {
				code = v
			}
			if v := str("xcode"); v != "" {
				xcode = v
			}
			if n, err := strconv.Atoi(code); err != nil || len(code) != 3 || (r.Action == "reject" && n/100 != 5) || (r.Action == "tempfail" && n/100 != 4) {
				c.Fail(p+"code", fmt.Errorf("%q: want a %dxx reply code", code, map[string]int{"reject": 5, "tempfail": 4}[r.Action]))
			}
			if !regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`).MatchString(xcode) || xcode[0] != code[0] {
				c.Fail(p+"xcode", fmt.Errorf("%q: want an extended code of the reply's class (%c.x.y)", xcode, code[0]))
			}
			text := str("text")
			if text == "" {
				text = map[string]string{"reject": "rejected by policy", "tempfail": "try again later"}[r.Action]
			}
			r.Reply = replyText(code, xcode, strings.Split(strings.TrimRight(text, "\n"), "\n"))
		case "quarantine":
			r.Edit = pmult.Edit{Kind: pmult.EditQuarantine, Value: need("reason")}
		case "add_header", "insert_header", "change_header":
			kind := map[string]pmult.EditKind{"add_header": pmult.EditAddHeader, "insert_header": pmult.EditInsertHeader,
				"change_header": pmult.EditChangeHeader}[r.Action]
			r.Edit = pmult.Edit{Kind: kind, Name: need("name"), Value: " " + need("value")}
			r.Edit.Index = c.Int(p+"index", m["index"], map[bool]int{true: 1, false: 0}[kind == pmult.EditChangeHeader], 0, 1<<20)
		case "delete_header":
			r.Edit = pmult.Edit{Kind: pmult.EditChangeHeader, Name: need("name")}
			if v := str("value_regex"); v != "" {
				re, err := cond.CompileRegex(v)
				if err != nil {
					c.Fail(p+"value_regex", err)
				}
				r.Value = re
			}
		case "change_sender":
			r.Edit = pmult.Edit{Kind: pmult.EditChangeFrom, Addr: "<" + strings.Trim(need("addr"), "<>") + ">"}
		case "add_rcpt":
			r.Edit = pmult.Edit{Kind: pmult.EditAddRcpt, Addr: "<" + strings.Trim(need("addr"), "<>") + ">"}
		case "delete_rcpt":
			r.Edit = pmult.Edit{Kind: pmult.EditDelRcpt, Addr: "<" + strings.Trim(need("addr"), "<>") + ">"}
		case "set_macro":
			r.Set = setMacros(&c, p, m)
		}
		if r.Action != "set_macro" {
			for _, k := range []string{"macro", "macros", "override", "from"} {
				if m[k] != nil {
					c.Fail(p+k, fmt.Errorf("only for action set_macro"))
				}
			}
		}
		s.Rules = append(s.Rules, r)
	}
	return s, c.Errs
}

// setMacros reads a set_macro rule's assignments: macro and value (one),
// or macros (a table of names and values, several), with override and
// from.
func setMacros(c *syntax.Checker, p string, m map[string]any) []pmult.Assignment {
	override := c.Bool(p+"override", m["override"])
	var from pmult.Kind
	if v := c.String(p+"from", m["from"]); v != "" {
		k, ok := macroStages[strings.ToLower(v)]
		if !ok {
			c.Fail(p+"from", fmt.Errorf("%q: want connect, helo, mail, rcpt, data, eoh or eom", v))
		}
		from = k
	}
	var out []pmult.Assignment
	add := func(key, name string, val any) {
		n := strings.TrimSpace(name)
		if t := strings.TrimSuffix(strings.TrimPrefix(n, "{"), "}"); t == "" || len(t) > 64 ||
			strings.ContainsAny(t, "{} \t\r\n\x00") {
			c.Fail(key, fmt.Errorf("%q is not a macro name (want e.g. \"{x_reputation}\")", name))
			return
		}
		v, ok := val.(string)
		if !ok {
			c.Fail(key, syntax.WantErr("a string", val))
			return
		}
		if strings.ContainsAny(v, "\x00\r\n") {
			c.Fail(key, errors.New("a macro value must be one line without NUL"))
			return
		}
		out = append(out, pmult.Assignment{Name: n, Value: v, From: from, Override: override})
	}
	if mv, ok := m["macro"]; ok {
		name := c.String(p+"macro", mv)
		if m["value"] == nil {
			c.Fail(p+"value", errors.New("required for action set_macro with macro"))
		} else {
			add(p+"macro", name, m["value"])
		}
	}
	if mv, ok := m["macros"]; ok {
		tab, isTab := mv.(map[string]any)
		if !isTab || len(tab) == 0 {
			c.Fail(p+"macros", syntax.WantErr(`a table of macro names and values ({ "{x_reputation}" = "bad" })`, mv))
		}
		names := make([]string, 0, len(tab))
		for n := range tab {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			add(p+"macros."+n, n, tab[n])
		}
	} else if m["value"] != nil && m["macro"] == nil {
		c.Fail(p+"macro", errors.New("required for action set_macro with value"))
	}
	if m["macro"] == nil && m["macros"] == nil && m["value"] == nil {
		c.Fail(p+"macro", errors.New("action set_macro needs macro and value, or macros"))
	}
	return out
}

func slicesContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Validate: everything is checked in ParseConfig.
func (s *Settings) Validate() []error { return nil }

// NewBackend returns the filter.
func (s *Settings) NewBackend(name string, _ int, log *slog.Logger) pmult.Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return New(name, s.Rules, log)
}
