package macros

import (
	"slices"
	"strings"
	"testing"
)

func TestTableApply(t *testing.T) {
	tab, errs := ParseTable(map[string]any{
		"rename":  map[string]any{"{tls_cipher_suite}": "{cipher}"},
		"alias":   map[string]any{"daemon_addr": "{if_addr}"},
		"default": map[string]any{"{auth_type}": "none"},
		"set":     map[string]any{"connect:{daemon_name}": "ORIGINATING"},
		"drop":    []any{"{b}"},
	})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := tab.Apply(Connect, []string{"{daemon_name}", "smtpd", "{b}", "x", "{daemon_addr}", "1.2.3.4", "{tls_cipher_suite}", "AES"})
	want := []string{"{daemon_name}", "ORIGINATING", "{daemon_addr}", "1.2.3.4", "{cipher}", "AES", "{if_addr}", "1.2.3.4"}
	if !slices.Equal(got, want) {
		t.Errorf("connect: got %q, want %q", got, want)
	}
	// {auth_type} defaults at the mail stage (Postfix's default list).
	if got := tab.Apply(EnvFrom, []string{"i", "Q1"}); !slices.Equal(got, []string{"i", "Q1", "{auth_type}", "none"}) {
		t.Errorf("mail, not sent: got %q", got)
	}
	if got := tab.Apply(EnvFrom, []string{"{auth_type}", "PLAIN"}); !slices.Equal(got, []string{"{auth_type}", "PLAIN"}) {
		t.Errorf("mail, sent: got %q", got)
	}
	if got := tab.Apply(EnvFrom, []string{"{auth_type}", ""}); !slices.Equal(got, []string{"{auth_type}", "none"}) {
		t.Errorf("mail, sent empty: got %q", got)
	}
	if !tab.Provides(Connect, "daemon_name") || !tab.Provides(EOH, "daemon_name") || tab.Provides(Connect, "auth_type") {
		t.Error("Provides")
	}
	// A set value replaces the MTA's at any stage where it comes (the
	// MTA sends {daemon_name} at EOH when a filter asked for it there),
	// and is offered at later stages where it does not.
	if got := tab.Apply(EOH, []string{"{daemon_name}", "smtpd"}); !slices.Equal(got, []string{"{daemon_name}", "ORIGINATING"}) {
		t.Errorf("eoh, sent: got %q", got)
	}
	if got := tab.Apply(EOH, nil); len(got) != 0 {
		t.Errorf("eoh, not sent: got %q", got)
	}
	if got := tab.Offered(EOH); !slices.Equal(got, []string{"{daemon_name}", "ORIGINATING", "{auth_type}", "none"}) {
		t.Errorf("Offered(eoh) = %q", got)
	}
	if got := tab.Offered(Connect); !slices.Equal(got, []string{"{daemon_name}", "ORIGINATING"}) {
		t.Errorf("Offered(connect) = %q", got)
	}
}

func TestParseTableErrors(t *testing.T) {
	_, errs := ParseTable(map[string]any{
		"rename":  map[string]any{"a": 3, "{x}": "{x}"},
		"set":     map[string]any{"bogus:{daemon_name}": "X", "{ bad}": "y"},
		"drop":    "b",
		"dialect": "milter",
		"colour":  1,
	}, "dialect")
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"rename.a: want a string", "rename.{x}: renames {x} to itself",
		`set.bogus:{daemon_name}: unknown stage "bogus"`, "set.{ bad}: bad macro name", "drop: want an array",
		"colour: unknown key"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
	if strings.Contains(all, "dialect:") {
		t.Errorf("skipped key reported:\n%s", all)
	}
}

func TestBuiltinMeta1(t *testing.T) {
	tab, ok := Builtin("meta1")
	if !ok {
		t.Fatal("no meta1 table")
	}
	got := tab.Apply(Connect, []string{"{tls_cipher_suite}", "AES", "{hostname}", "mx"})
	if v, _ := Lookup(got, "cipher"); v != "AES" {
		t.Errorf("cipher: %q", got)
	}
	if v, _ := Lookup(got, "j"); v != "mx" {
		t.Errorf("j: %q", got)
	}
	if !CanDerive(EnvFrom, "{client_addr}") || CanDerive(Connect, "{mail_addr}") || CanDerive(EOM, "rcpt_addr") {
		t.Error("CanDerive")
	}
}

// A table that changes nothing in a set returns the set itself (no copy);
// one that changes something returns a copy and leaves the set as it was.
func TestApplySharesUnchanged(t *testing.T) {
	milter, _ := Builtin("milter")
	tab := Chain(milter, &Table{Set: []Entry{{Stage: EnvFrom, Name: "auth_type", Value: "none"}}})
	pairs := []string{"i", "Q1", "{mail_addr}", "a@example.org"}
	if out := tab.Apply(Helo, pairs); &out[0] != &pairs[0] || len(out) != len(pairs) {
		t.Errorf("unchanged set copied: %q", out)
	}
	out := tab.Apply(EnvFrom, pairs)
	if v, _ := Lookup(out, "auth_type"); v != "none" || len(pairs) != 4 || pairs[0] != "i" {
		t.Errorf("Apply(EnvFrom) = %q (in %q)", out, pairs)
	}
	conn := []string{"j", "mx.example", "{daemon_addr}", "192.0.2.25"}
	out = tab.Apply(Connect, conn)
	if v, _ := Lookup(out, "if_addr"); v != "192.0.2.25" || len(conn) != 4 {
		t.Errorf("alias: %q", out)
	}
	if v, _ := Lookup(out, "if_name"); v != "mx.example" {
		t.Errorf("alias j: %q", out)
	}
	same := []string{"{auth_type}", "none"}
	if out := tab.Apply(EnvFrom, same); &out[0] != &same[0] {
		t.Errorf("a set value already in place copied: %q", out)
	}
}
