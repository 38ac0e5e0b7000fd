package milter

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailmux/mailmux/config/syntax"
)

// parseTable decodes one table's keys as config does (PrimitiveDecode).
func parseTable(t *testing.T, doc string, maxMessage int) (*Settings, []string) {
	t.Helper()
	var raw struct {
		B toml.Primitive `toml:"b"`
	}
	md, err := toml.Decode("[b]\n"+doc, &raw)
	if err != nil {
		t.Fatal(err)
	}
	s, errs := ParseConfig(func(v any) error { return md.PrimitiveDecode(raw.B, v) }, maxMessage)
	errs = append(errs, s.Validate()...)
	var msgs []string
	for _, e := range errs {
		var ke *syntax.KeyError
		if !errors.As(e, &ke) {
			t.Errorf("error %T %q is not a *syntax.KeyError", e, e)
		}
		msgs = append(msgs, e.Error())
	}
	return s, msgs
}

func TestParseConfigDefaults(t *testing.T) {
	s, errs := parseTable(t, `address = "inet:8891@127.0.0.1"`, 1<<20)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if s.ConnectTimeout.Duration != DefaultConnectTimeout || s.ReadTimeout.Duration != DefaultReadTimeout ||
		s.WriteTimeout.Duration != DefaultWriteTimeout || s.EOMTimeout.Duration != DefaultEOMTimeout ||
		s.MilterVersion != 6 || s.MaxBody != 1<<20 || !s.Reuse || s.Old != nil ||
		s.Addr.Network != "tcp" || s.Addr.Addr != "127.0.0.1:8891" {
		t.Errorf("%+v", s)
	}
	c := s.Config("dkim", 1<<26, nil)
	if c.Name != "dkim" || c.Network != "tcp" || c.Address != "127.0.0.1:8891" || c.MaxVersion != 6 || c.MaxPacket != 1<<26 ||
		c.EOMTimeout != 300*time.Second || c.MaxBody != 1<<20 {
		t.Errorf("Config: %+v", c)
	}
	if b := s.NewBackend("dkim", 0, nil); b.Name() != "dkim" {
		t.Errorf("NewBackend: %q", b.Name())
	}
}

func TestParseConfigOldSpellingsAndErrors(t *testing.T) {
	s, errs := parseTable(t, "url = \"unix:/run/m.sock\"\nprotocol = 4\nreuse = false\n", 0)
	if len(errs) != 0 || s.MilterVersion != 4 || s.Reuse || s.Addr.Addr != "/run/m.sock" || !slices.Equal(s.Old, []string{"url", "protocol"}) {
		t.Errorf("old spellings: %+v %v", s, errs)
	}
	_, errs = parseTable(t, `
url = "inet:1@h"
address = "inet:1@h"
read_timeout = "0s"
eom_timeout = "soon"
milter_version = 9
max_body = 10
reuse = "yes"
`, 0)
	want := []string{
		`url: url is the old spelling of address: keep address only`,
		`read_timeout: must be positive (leave it out for the default, 10s)`,
		`eom_timeout: duration "soon": expected a number at "soon" (want e.g. "10s", "300" or "2 hours 35 seconds")`,
		`milter_version: 9 is out of range (want 2 to 6)`,
		`max_body: 10 is too small (minimum 65536)`,
		`reuse: want true or false, not a TOML string`,
	}
	if !slices.Equal(errs, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(want, "\n"))
	}
	for doc, want := range map[string]string{
		"":                     `address: missing (the milter's socket`,
		`address = 5`:          `address: want a string, not a TOML integer`,
		`address = "inet:0@h"`: `address: address "inet:0@h": port 0 cannot be connected to`,
		`url = "inet:x"`:       `url: address "inet:x": bad port "x"`,
	} {
		if _, errs := parseTable(t, doc, 0); len(errs) != 1 || !strings.HasPrefix(errs[0], want) {
			t.Errorf("%q: %q, want one error starting %q", doc, errs, want)
		}
	}
	for _, k := range []string{"address", "url", "milter_version", "protocol", "max_body", "reuse", "eom_timeout"} {
		if !slices.Contains(Keys(), k) {
			t.Errorf("Keys() lacks %q", k)
		}
	}
}
