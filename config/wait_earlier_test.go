package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailmux/mailmux/pmult"
)

// wait_earlier: stage names, checked with place, built into the policy.
func TestWaitEarlier(t *testing.T) {
	cfg := mustParse(t, `
[[backend]]
name = "rules"
type = "filter"
[[backend.rule]]
action = "set_macro"
macro = "{spf_result}"
value = "pass"
[[backend]]
name = "m"
address = "inet:127.0.0.1:8891"
wait_earlier = ["mail", "RCPT"]
`)
	if got := cfg.Backends[1].WaitEarlier; !slices.Equal(got, []string{"mail", "rcpt"}) {
		t.Errorf("WaitEarlier = %q", got)
	}
	e, err := cfg.Engine(nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := e.Slots[1].Policy.WaitEarlier; w != pmult.Kinds(pmult.KindMail, pmult.KindRcpt) || e.Slots[0].Policy.WaitEarlier != 0 {
		t.Errorf("policies: %v %v", e.Slots[0].Policy.WaitEarlier, w)
	}
	got := strings.Join(parseErrors(t, `
[[backend]]
name = "a"
address = "inet:127.0.0.1:8891"
wait_earlier = ["mail", "eom"]
[[backend]]
name = "b"
address = "inet:127.0.0.1:8892"
wait_earlier = "mail"
`), "\n")
	for _, want := range []string{
		`backend[0] "a": wait_earlier[1]: eom: want connect, helo, mail, rcpt, data or unknown`,
		`backend[1] "b": wait_earlier: want an array of stages`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}
