// seam_test.go: the callout backend and the macros of other backends
// (pmult/assign.go): a tag verdict sets a macro for the backends after
// it; a sender an earlier backend vouched for by a macro it set (even at
// MAIL itself) is not probed, and the skip is a policy in the record.

package callout

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/mailmux/mailmux/backends/filter"
	"github.com/mailmux/mailmux/pmult"
	"github.com/mailmux/mailmux/pmult/pmulttest"
)

func TestTagSetsMacro(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		keys, name, want string
	}{
		{`verdict_not_found = "tag"`, "sender_verify", "not_found"},
		{"verdict_not_found = \"tag\"\ntag_macro = \"x_sav\"", "x_sav", "not_found"},
		{"verdict_not_found = \"tag\"\ntag_macro = \"none\"", "sender_verify", "-"},
		{`verdict_success = "tag"`, "sender_verify", "success"},
	} {
		before := pmulttest.New("before", pmulttest.Reader)
		after := pmulttest.New("after", pmulttest.Reader)
		e := &pmult.Engine{Slots: pmulttest.Slots[pmult.Backend](before, backend(t, w.conf(c.keys)), after)}
		h := pmulttest.Open(t, e, pmulttest.AllOffer)
		h.Connect()
		h.Helo()
		addr := map[bool]string{true: "good@ok.test", false: "bad@ok.test"}[c.want == "success"]
		if r := mail(h, addr); r.Verdict != pmult.Continue {
			t.Fatalf("%s: MAIL = %+v", c.keys, r)
		}
		h.Rcpt("b@example.net")
		h.Data()
		h.Message([]string{"Subject", " x"}, "")
		if got := after.MacroValues(pmult.KindRcpt, c.name); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s: after sees {%s} = %q at RCPT, want %q", c.keys, c.name, got, c.want)
		}
		if got := after.MacroValues(pmult.KindEOM, c.name); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s: after sees {%s} = %q at EOM, want %q", c.keys, c.name, got, c.want)
		}
		if got := before.MacroValues(pmult.KindRcpt, c.name); !slices.Equal(got, []string{"-"}) {
			t.Errorf("%s: before sees {%s} = %q", c.keys, c.name, got)
		}
	}
	if got := backend(t, w.conf(`verdict_not_found = "tag"`)).SetsMacros(); !slices.Equal(got, []string{"{sender_verify}", "{rcpt_verify}"}) {
		t.Errorf("SetsMacros with a tag verdict: %q", got)
	}
	if got := backend(t, w.conf("")).SetsMacros(); got != nil {
		t.Errorf("SetsMacros without a tag verdict: %q", got)
	}
	if _, errs := ParseConfig(func(v any) error { _, err := toml.Decode(`tag_macro = "{bad name}"`, v); return err }); len(errs) == 0 ||
		!strings.Contains(errs[0].Error(), "tag_macro") {
		t.Errorf("bad tag_macro: %v", errs)
	}
}

// The rule filter sets {spf_result} = pass at MAIL for senders of
// ok.test; the callout backend after it with skip_macro sees it at MAIL
// (it waits for the backends before it there) and does not probe; the
// skip is a macro_skip policy. With the filter after it, it probes.
func TestMacroSkipByEarlierBackend(t *testing.T) {
	w := newWorld(t)
	fs, errs := filter.ParseConfig(func(v any) error {
		_, err := toml.Decode(`
[[rule]]
match = { sender_domain = "ok.test" }
action = "set_macro"
macro = "{spf_result}"
value = "pass"
`, v)
		return err
	})
	if errs != nil {
		t.Fatal(errs)
	}
	sav := backend(t, w.conf(`skip_macro = "spf_result"`))
	run := func(slots ...pmult.Backend) (pmult.Reply, string) {
		rec := pmult.NewRecorder(4)
		var log bytes.Buffer
		e := &pmult.Engine{Records: rec, Log: pmulttest.NewLog(&log), Slots: pmulttest.Slots(slots...)}
		s := e.NewSession("s1", nil)
		defer s.Close()
		h := &pmulttest.Harness{T: t, E: e, S: s, Ctx: t.Context()}
		s.Open(h.Ctx, pmulttest.AllOffer, nil)
		h.Connect()
		h.Helo()
		r := mail(h, "bad@ok.test")
		h.Abort()
		var why bytes.Buffer
		rec.WriteWhy(&why, "s1")
		return r, why.String() + log.String()
	}
	n := w.ok.Connections()
	r, why := run(fs.NewBackend("spf", 0, nil), sav)
	if r.Verdict != pmult.Continue {
		t.Errorf("filter before: MAIL = %+v, want continue (skipped)", r)
	}
	if w.ok.Connections() != n {
		t.Errorf("filter before: %d probes, want none", w.ok.Connections()-n)
	}
	if !strings.Contains(why, "macro_skip sav at mail: {spf_result}=pass") {
		t.Errorf("no macro_skip policy in the record:\n%s", why)
	}
	// One connection, two messages: the first sender vouched for, the
	// second not: the macro of the first message does not skip the second.
	e := &pmult.Engine{Slots: pmulttest.Slots[pmult.Backend](fs.NewBackend("spf", 0, nil), sav)}
	h := pmulttest.Open(t, e, pmulttest.AllOffer)
	h.Connect()
	h.Helo()
	if r := mail(h, "bad@ok.test"); r.Verdict != pmult.Continue {
		t.Errorf("first message: %+v, want skipped", r)
	}
	h.Abort()
	if r := mail(h, "bad@nullmx.test"); r.Verdict != pmult.Reject {
		t.Errorf("second message: %+v, want verified and rejected (no mail host)", r)
	}
	r, _ = run(sav, fs.NewBackend("spf", 0, nil))
	if r.Verdict != pmult.Reject {
		t.Errorf("filter after: MAIL = %+v, want the probe's reject", r)
	}
	if w.ok.Connections() == n {
		t.Error("filter after: not probed")
	}
}
